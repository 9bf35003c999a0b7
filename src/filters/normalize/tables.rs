//! The character tables of [`normalize`](super::normalize): how each ASCII byte is classed, read
//! as a letter inside a word, or marked at a word's edge, and which letters of other scripts read
//! as which Latin letter.
//!
//! These are data, not algorithm: adding a look-alike or a leet reading is an edit here alone.
//! The byte tables are indexed by the low 7 bits, so every entry for `0..128` must be set (they
//! are built by `const` loops from a complete default); a reading must be one ASCII byte (a
//! letter, or one of the placeholders `EITHER_*` / `EDGE_*`), since the canonical form keeps one
//! origin per byte.

use super::{Class, EDGE_C, EDGE_I_L, EDGE_T, EITHER_B_G, EITHER_G_Q, EITHER_I_L};

/// ASCII lower-casing as a table, for the byte loops above.
const LOWER: [u8; 128] = {
    let mut table = [0u8; 128];
    let mut b = 0;
    while b < 128 {
        table[b] = (b as u8).to_ascii_lowercase();
        b += 1;
    }
    table
};

/// Lower-casing plus reading letter-like characters as letters (or as placeholders for two
/// letters), for the core of a word with letters.
pub(super) const AS_LETTERS: [u8; 128] = {
    let mut table = LOWER;
    table[b'0' as usize] = b'o';
    table[b'1' as usize] = EITHER_I_L as u8;
    table[b'3' as usize] = b'e';
    table[b'4' as usize] = b'a';
    table[b'@' as usize] = b'a';
    table[b'5' as usize] = b's';
    table[b'$' as usize] = b's';
    table[b'6' as usize] = EITHER_B_G as u8;
    table[b'7' as usize] = b't';
    table[b'8' as usize] = b'b';
    table[b'9' as usize] = EITHER_G_Q as u8;
    table[b'!' as usize] = EITHER_I_L as u8;
    table[b'|' as usize] = EITHER_I_L as u8;
    table[b'+' as usize] = b't';
    table[b'(' as usize] = b'c';
    table
};

/// The edge mark of each [`Class::Inner`] symbol.
pub(super) const EDGE_MARKS: [u8; 128] = {
    let mut table = [b' '; 128];
    table[b'!' as usize] = EDGE_I_L as u8;
    table[b'|' as usize] = EDGE_I_L as u8;
    table[b'+' as usize] = EDGE_T as u8;
    table[b'(' as usize] = EDGE_C as u8;
    table
};

/// The class of each ASCII byte (case does not matter). `2` alone of the digits stands for no
/// letter (`B2B`).
pub(super) const ASCII_CLASS: [Class; 128] = {
    let mut table = [Class::Separator; 128];
    let mut b = 0;
    while b < 128 {
        let c = (b as u8).to_ascii_lowercase();
        table[b] = match c {
            b'a'..=b'z' => Class::Letter,
            b'2' => Class::Digit,
            b'0'..=b'9' | b'@' | b'$' => Class::LetterLike,
            b'!' | b'|' | b'+' | b'(' => Class::Inner,
            _ => Class::Separator,
        };
        b += 1;
    }
    table
};

/// Latin look-alikes of capitals from other scripts, checked before lower-casing because some
/// capitals and their small letters look like different Latin letters (Greek `Ν` is N, `ν` is v).
pub(super) fn confusable_capital(c: char) -> char {
    match c {
        'А' | 'Α' => 'A',
        'В' | 'Β' => 'B',
        'Е' | 'Ε' => 'E',
        'Ζ' => 'Z',
        'Н' | 'Η' => 'H',
        'І' | 'Ι' => 'I',
        'Ј' => 'J',
        'К' | 'Κ' => 'K',
        'М' | 'Μ' => 'M',
        'Ν' => 'N',
        'О' | 'Ο' => 'O',
        'Р' | 'Ρ' => 'P',
        'С' => 'C',
        'Ѕ' => 'S',
        'Т' | 'Τ' => 'T',
        'У' | 'Υ' => 'Y',
        'Х' | 'Χ' => 'X',
        other => other,
    }
}

/// Latin look-alikes of letters from other scripts, after lower-casing.
pub(super) fn confusable(c: char) -> char {
    match c {
        // Cyrillic
        'а' => 'a',
        'в' => 'b',
        'е' | 'ё' | 'є' => 'e',
        'к' => 'k',
        'м' => 'm',
        'н' => 'h',
        'о' => 'o',
        'р' => 'p',
        'с' => 'c',
        'т' => 't',
        'у' => 'y',
        'х' => 'x',
        'і' | 'ї' => 'i',
        'ј' => 'j',
        'ѕ' => 's',
        'ԁ' => 'd',
        'ԛ' => 'q',
        'ԝ' => 'w',
        'ӏ' => 'l',
        'һ' => 'h',
        'ԍ' => 'g',
        // Currency and other symbols that stand for letters
        '€' => 'e',
        // Greek
        'α' => 'a',
        'β' => 'b',
        'ε' => 'e',
        'η' => 'n',
        'ι' => 'i',
        'κ' => 'k',
        'ν' => 'v',
        'ο' => 'o',
        'ρ' => 'p',
        'τ' => 't',
        'υ' => 'u',
        'χ' => 'x',
        'ω' => 'w',
        // Latin letters NFKD leaves alone
        'ı' => 'i',
        'ł' => 'l',
        'ø' => 'o',
        'đ' => 'd',
        'ɡ' => 'g',
        other => other,
    }
}
