//! The rules for usernames and room names (wire protocol §2).
//!
//! Usernames are 1–32 characters of `A–Z a–z 0–9 _ -`, compared without regard to case; the
//! server's own names ([`RESERVED_NAMES`]: `server`, which prefixes its lines, and `chatpipe`, its
//! name in IRC prefixes) are reserved so nobody can pass for the server. Because only ASCII letters and digits are allowed,
//! look-alike letters from other scripts cannot be used to impersonate another user.

use std::fmt;

/// Longest username or room name, in characters.
pub const MAX_NAME_CHARS: usize = 32;

/// Why a username or room name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Nothing was given.
    #[error("a name needs at least one character")]
    Empty,
    /// More than [`MAX_NAME_CHARS`].
    #[error("a name has at most {MAX_NAME_CHARS} characters")]
    TooLong,
    /// A character outside the allowed set.
    #[error("only letters A-Z, digits, '_' and '-' are allowed")]
    BadCharacter,
    /// Room names are lower case.
    #[error("room names use only a-z, digits, '_' and '-'")]
    BadRoomCharacter,
    /// One of the server's own names ([`RESERVED_NAMES`]) in any case.
    #[error("that name is reserved")]
    Reserved,
}

/// Checks a username's form (not whether it is taken).
///
/// # Errors
/// The first rule the name breaks.
pub fn validate_username(name: &str) -> Result<(), NameError> {
    check_length(name)?;
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(NameError::BadCharacter);
    }
    if looks_like_server(name) {
        return Err(NameError::Reserved);
    }
    Ok(())
}

/// The names the server goes by, which nobody may take: `server` (its lines are `SERVER: …`)
/// and `chatpipe` (its name as IRC clients see it, `:chatpipe NOTICE …`, and the host in every
/// user's prefix). A user called `chatpipe` would appear to IRC clients as
/// `:chatpipe!chatpipe@chatpipe`, the server speaking.
pub const RESERVED_NAMES: &[&str] = &["server", "chatpipe"];

/// A reserved name in any case, and its look-alikes: digits read as letters (`5erv3r`,
/// `chatp1pe`, `ch4tpipe`, `cha7pipe`), `l` and `i` alike (`chatplpe`), `_`/`-` ignored
/// (`s_e_r_v_e_r`), and a reserved name as the first part of a name (`SERVER-bot`, whose lines
/// read `SERVER-bot: …`), so nobody can pass for the server in a participant list or a line.
fn looks_like_server(name: &str) -> bool {
    let first_part = name.split(['-', '_']).next().unwrap_or(name);
    is_reserved_skeleton(name) || is_reserved_skeleton(first_part)
}

fn is_reserved_skeleton(name: &str) -> bool {
    let skeleton: String = name
        .bytes()
        .filter(|b| *b != b'_' && *b != b'-')
        .map(|b| match b.to_ascii_lowercase() {
            b'5' | b'$' => 's',
            b'3' => 'e',
            b'0' => 'o',
            b'4' => 'a',
            b'7' => 't',
            b'1' | b'!' | b'l' | b'|' => 'i',
            other => char::from(other),
        })
        .collect();
    RESERVED_NAMES
        .iter()
        .any(|reserved| skeleton == reserved.replace('l', "i"))
}

/// Checks a room name's form; callers fold case first where the protocol allows it.
///
/// # Errors
/// The first rule the name breaks.
pub fn validate_room_name(name: &str) -> Result<(), NameError> {
    check_length(name)?;
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
    {
        return Err(NameError::BadRoomCharacter);
    }
    Ok(())
}

fn check_length(name: &str) -> Result<(), NameError> {
    match name.chars().count() {
        0 => Err(NameError::Empty),
        n if n > MAX_NAME_CHARS => Err(NameError::TooLong),
        _ => Ok(()),
    }
}

/// A username folded for comparison: `Alice` and `ALICE` are the same user.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NameKey(String);

impl NameKey {
    /// The key of `name`.
    pub fn new(name: &str) -> Self {
        NameKey(name.to_ascii_lowercase())
    }
}

impl fmt::Display for NameKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames() {
        assert_eq!(validate_username("alice_01-x"), Ok(()));
        assert_eq!(validate_username(""), Err(NameError::Empty));
        assert_eq!(validate_username(&"a".repeat(33)), Err(NameError::TooLong));
        assert_eq!(validate_username(&"a".repeat(32)), Ok(()));
        assert_eq!(validate_username("al ice"), Err(NameError::BadCharacter));
        assert_eq!(
            validate_username("аlice"),
            Err(NameError::BadCharacter),
            "Cyrillic а"
        );
        assert_eq!(validate_username("SeRvEr"), Err(NameError::Reserved));
        assert_eq!(validate_username("5erv3r"), Err(NameError::Reserved));
        assert_eq!(validate_username("S_E-R_V-E_R"), Err(NameError::Reserved));
        assert_eq!(validate_username("server2"), Ok(()));
        assert_eq!(validate_username("chatpipe"), Err(NameError::Reserved));
        assert_eq!(validate_username("ChatPipe"), Err(NameError::Reserved));
        assert_eq!(validate_username("CHAT_P1PE"), Err(NameError::Reserved));
        assert_eq!(validate_username("chatpiper"), Ok(()));
        for look_alike in [
            "ch4tpipe",
            "cha7pipe",
            "chatplpe",
            "ch4tp1pe",
            "SERVER-bot",
            "chatpipe_",
        ] {
            assert_eq!(
                validate_username(look_alike),
                Err(NameError::Reserved),
                "{look_alike}"
            );
        }
        assert_eq!(validate_username("lisa"), Ok(()));
        assert_eq!(validate_username("servers"), Ok(()));
        assert_eq!(validate_username("nul\0"), Err(NameError::BadCharacter));
        assert_eq!(NameKey::new("Alice"), NameKey::new("aLICE"));
    }

    #[test]
    fn room_names() {
        assert_eq!(validate_room_name("lobby"), Ok(()));
        assert_eq!(
            validate_room_name("Lobby"),
            Err(NameError::BadRoomCharacter)
        );
        assert_eq!(validate_room_name(""), Err(NameError::Empty));
    }
}
