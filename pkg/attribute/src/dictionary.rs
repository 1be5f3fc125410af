//! Dictionary compression of attribute names and string values, as Mixer's `CompressedAttributes`
//! uses it: an index `i >= 0` names the `i`-th word of the global word list, an index `i < 0`
//! names word `-i - 1` of the message's own `words`. The sender ([`MessageDictionary`]) uses the
//! global index when the word has one and appends the word to the message otherwise; the
//! receiver resolves indices with [`lookup`].
//!
//! The word list comes from `istio-api`; which attributes exist and what they mean does not
//! belong here.

use std::collections::HashMap;
use std::sync::LazyLock;

static WORDS: LazyLock<Vec<&'static str>> = LazyLock::new(|| {
    istio_api::dictionary::GLOBAL_WORD_LIST.lines().map(str::trim).filter(|line| !line.is_empty()).collect()
});

static INDEX: LazyLock<HashMap<&'static str, i32>> = LazyLock::new(|| {
    let mut index = HashMap::with_capacity(WORDS.len());
    for (position, word) in WORDS.iter().enumerate() {
        // The list has a few hundred words, so every position fits.
        let position = i32::try_from(position).unwrap_or(i32::MAX);
        index.entry(*word).or_insert(position);
    }
    index
});

/// The global words in dictionary order.
pub fn global_words() -> &'static [&'static str] {
    &WORDS
}

/// The index of `word` in the global dictionary, if it is there.
pub fn global_index(word: &str) -> Option<i32> {
    INDEX.get(word).copied()
}

/// A dictionary index that names no word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("dictionary index {index} names no word (global words: {global}, message words: {message})")]
pub struct UnknownIndex {
    pub index: i32,
    pub global: usize,
    pub message: usize,
}

/// The word `index` names, given a message's own words.
pub fn lookup(index: i32, message_words: &[String]) -> Result<&str, UnknownIndex> {
    let found = if index >= 0 {
        usize::try_from(index).ok().and_then(|position| WORDS.get(position).copied())
    } else {
        usize::try_from(-(i64::from(index) + 1))
            .ok()
            .and_then(|position| message_words.get(position))
            .map(String::as_str)
    };
    found.ok_or(UnknownIndex { index, global: WORDS.len(), message: message_words.len() })
}

/// The sending side's dictionary for one message: global indices where they exist, and the
/// words that are not global, each added once.
#[derive(Debug, Clone)]
pub struct MessageDictionary {
    words: Vec<String>,
    positions: HashMap<String, i32>,
    /// Global words at or past this index are sent as message words (`global_word_count`).
    global_limit: usize,
}

impl Default for MessageDictionary {
    fn default() -> MessageDictionary {
        MessageDictionary::with_global_word_count(WORDS.len())
    }
}

impl MessageDictionary {
    /// A dictionary that only uses the first `count` global words, as a peer that knows only
    /// that many expects (`global_word_count`).
    pub fn with_global_word_count(count: usize) -> MessageDictionary {
        MessageDictionary { words: Vec::new(), positions: HashMap::new(), global_limit: count.min(WORDS.len()) }
    }

    /// How many global words this dictionary uses.
    pub fn global_word_count(&self) -> usize {
        self.global_limit
    }

    /// The index that names `word`, adding it to the message's words if it is not global.
    pub fn index(&mut self, word: &str) -> i32 {
        if let Some(index) =
            global_index(word).filter(|index| usize::try_from(*index).is_ok_and(|i| i < self.global_limit))
        {
            return index;
        }
        if let Some(index) = self.positions.get(word) {
            return *index;
        }
        let index = -i32::try_from(self.words.len() + 1).unwrap_or(i32::MAX);
        self.words.push(word.to_string());
        self.positions.insert(word.to_string(), index);
        index
    }

    /// The message's own words, to send beside the indices.
    pub fn into_words(self) -> Vec<String> {
        self.words
    }

    /// The message's own words so far.
    pub fn words(&self) -> &[String] {
        &self.words
    }

    /// Forgets the message words (for the next batch), keeping the global limit.
    pub fn clear(&mut self) {
        self.words.clear();
        self.positions.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_word_list_is_istio_1_4_6s() {
        let words = global_words();
        assert_eq!(words.len(), 222);
        assert_eq!(&words[..3], &["source.ip", "source.port", "source.name"]);
        // Indices past 165 moved when words were added to and removed from the list upstream;
        // these are the positions 1.4.6's Mixer and proxies agree on.
        assert_eq!(global_index("request.auth.presenter"), Some(165));
        assert_eq!(global_index("request.api_key"), Some(166));
        assert_eq!(global_index("check.error_code"), Some(167));
        assert_eq!(global_index("inbound"), Some(219));
        assert_eq!(global_index("outbound"), Some(220));
        assert_eq!(global_index("context.proxy_version"), Some(221));
        assert_eq!(global_index("rbac.permissive.response_code"), None);
        // The generated lists kept YAML's quotes, so the quoted forms are the words.
        assert_eq!(global_index("'200'"), Some(94));
        assert_eq!(global_index("\"-\""), Some(218));
        assert_eq!(global_index("'0'"), Some(111));
    }

    #[test]
    fn every_word_has_its_own_index() {
        for (position, word) in global_words().iter().enumerate() {
            assert_eq!(global_index(word), Some(position as i32), "{word}");
        }
        assert_eq!(global_index("no.such.attribute"), None);
    }

    #[test]
    fn message_words_get_negative_indices_and_resolve_back() {
        let mut dictionary = MessageDictionary::default();
        assert_eq!(dictionary.index("source.ip"), 0);
        assert_eq!(dictionary.index("reviews.default.svc.cluster.local"), -1);
        assert_eq!(dictionary.index("x-custom"), -2);
        assert_eq!(dictionary.index("reviews.default.svc.cluster.local"), -1);
        let words = dictionary.into_words();
        assert_eq!(words, ["reviews.default.svc.cluster.local", "x-custom"]);
        assert_eq!(lookup(0, &words), Ok("source.ip"));
        assert_eq!(lookup(-2, &words), Ok("x-custom"));
        assert_eq!(lookup(-3, &words), Err(UnknownIndex { index: -3, global: 222, message: 2 }));
        assert!(lookup(222, &words).is_err());
        assert!(lookup(i32::MIN, &words).is_err());
    }

    #[test]
    fn a_smaller_global_word_count_sends_later_words_in_the_message() {
        let mut dictionary = MessageDictionary::with_global_word_count(2);
        assert_eq!(dictionary.index("source.ip"), 0);
        assert_eq!(dictionary.index("source.port"), 1);
        assert_eq!(dictionary.index("source.name"), -1);
        assert_eq!(dictionary.words(), ["source.name"]);
    }
}
