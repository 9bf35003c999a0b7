//! Link detection: `https://…`, `www.…` and bare domains such as `example.com/path`.
//!
//! A link whose host is an allowed domain, or a subdomain of one, is not a match.

use std::ops::Range;
use std::sync::LazyLock;

use regex::Regex;
use serde::Deserialize;

/// `[links]` in a filter file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinksConfig {
    /// Domains whose links are fine (subdomains included), e.g. `["example.org"]`.
    #[serde(default)]
    pub allow_domains: Vec<String>,
}

/// Finds links that are not on an allowed domain.
#[derive(Debug, Clone)]
pub struct LinkRule {
    allow_domains: Vec<String>,
}

/// Schemes, `www.`, or a dotted name ending in a common top-level domain.
static LINK: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)\b(?:[a-z][a-z0-9+.-]*://[^\s]+|www\.[^\s]+|(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)+(?:com|net|org|io|gg|co|me|ly|xyz|info|biz|ru|cn|tk|app|dev|tv|us|uk|de|link|site|online|club|shop|top|live)\b(?:[/:?#][^\s]*)?)",
    )
    .expect("the link pattern is valid")
});

impl LinkRule {
    /// A rule allowing `config.allow_domains`.
    pub fn new(config: &LinksConfig) -> Self {
        LinkRule {
            allow_domains: config
                .allow_domains
                .iter()
                .map(|d| d.trim_start_matches('.').to_ascii_lowercase())
                .collect(),
        }
    }

    /// Byte ranges of `text` holding links to domains not allowed.
    pub fn find(&self, text: &str) -> Vec<Range<usize>> {
        LINK.find_iter(text)
            .filter(|m| !self.allowed(m.as_str()))
            .map(|m| m.range())
            .collect()
    }

    fn allowed(&self, link: &str) -> bool {
        let rest = link.split_once("://").map_or(link, |(_, rest)| rest);
        let host = rest
            .split(['/', ':', '?', '#'])
            .next()
            .unwrap_or(rest)
            .rsplit('@')
            .next()
            .unwrap_or(rest)
            .trim_end_matches('.')
            .to_ascii_lowercase();
        self.allow_domains.iter().any(|domain| {
            host == *domain
                || host
                    .strip_suffix(domain.as_str())
                    .is_some_and(|prefix| prefix.ends_with('.'))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(rule: &LinkRule, text: &str) -> Vec<String> {
        rule.find(text)
            .into_iter()
            .map(|r| text[r].to_owned())
            .collect()
    }

    #[test]
    fn finds_urls_and_bare_domains() {
        let rule = LinkRule::new(&LinksConfig::default());
        assert_eq!(
            found(
                &rule,
                "see https://evil.example/x and www.spam.biz or free-stuff.gg/win"
            ),
            [
                "https://evil.example/x",
                "www.spam.biz",
                "free-stuff.gg/win"
            ]
        );
        assert!(found(&rule, "e.g. this is fine... really.").is_empty());
    }

    #[test]
    fn allowed_domains_and_subdomains_pass() {
        let rule = LinkRule::new(&LinksConfig {
            allow_domains: vec!["example.org".into()],
        });
        assert!(found(&rule, "https://docs.example.org/a and example.org").is_empty());
        assert_eq!(found(&rule, "badexample.org"), ["badexample.org"]);
    }
}
