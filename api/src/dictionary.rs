//! Mixer's global attribute dictionary: the append-only word list both sides of a
//! `Check`/`Report` call share, so that a compressed attribute can name a word by index.
//! Index `i >= 0` is the `i`-th word below; negative indices point into a message's own words.

use std::collections::HashMap;
use std::sync::LazyLock;

const RAW: &str = include_str!("../proto/mixer/v1/global_dictionary.txt");

static WORDS: LazyLock<Vec<&'static str>> =
    LazyLock::new(|| RAW.lines().map(str::trim).filter(|line| !line.is_empty()).collect());

static INDEX: LazyLock<HashMap<&'static str, i32>> = LazyLock::new(|| {
    let mut index = HashMap::with_capacity(WORDS.len());
    for (position, word) in WORDS.iter().enumerate() {
        // The list is small (a few hundred words), so the position always fits.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dictionary_starts_with_source_attributes_and_round_trips() {
        let words = global_words();
        assert!(words.len() > 200, "dictionary has {} words", words.len());
        assert_eq!(&words[..3], &["source.ip", "source.port", "source.name"]);
        for (position, word) in words.iter().enumerate().take(50) {
            assert_eq!(global_index(word), Some(position as i32), "{word}");
        }
        assert_eq!(global_index("no.such.attribute"), None);
    }
}
