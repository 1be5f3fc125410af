//! Report batches: a `ReportRequest` carries several attribute sets sharing `default_words`, either
//! each complete (`INDEPENDENT_ENCODING`, what 1.4's proxies sent) or each only what changed since
//! the one before (`DELTA_ENCODING`, the default when the field is left out). Decoding gives one
//! bag (or one error) per element, as 1.4's Mixer dispatched them; encoding builds either form.

use istio_api::pb::istio::mixer::v1 as mixer;
use mixer::report_request::RepeatedAttributesSemantics as Semantics;

use crate::bag::MapBag;
use crate::dictionary::{global_words, MessageDictionary};
use crate::wire::compressed::{decode_into, decode_lenient, encode_with, DecodeError};

/// A request no element of which can be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// The sender used more global words than this side knows (gRPC `INTERNAL` in 1.4).
    #[error("inconsistent global dictionary versions used: mixer knows {known} words, caller knows {caller}")]
    DictionaryMismatch { known: usize, caller: u32 },
}

/// One element of a batch, decoded.
#[derive(Debug, Clone, PartialEq)]
pub enum Element<'a> {
    /// The element's attributes, with problems that only left attributes out.
    Decoded { bag: &'a MapBag, problems: Vec<DecodeError> },
    /// An element that could not be read (not dispatched): 1.4's message.
    Invalid(String),
}

/// Checks a request's `global_word_count` against the global dictionary.
pub fn check_global_word_count(count: u32) -> Result<(), BatchError> {
    let known = global_words().len();
    if usize::try_from(count).map_or(true, |count| count > known) {
        return Err(BatchError::DictionaryMismatch { known, caller: count });
    }
    Ok(())
}

/// Reads a report request's elements one at a time, so a batch costs one bag however long it
/// is (delta elements update the same bag in place).
#[derive(Debug)]
pub struct ReportDecoder<'r> {
    request: &'r mixer::ReportRequest,
    next: usize,
    independent: bool,
    bag: MapBag,
}

/// Starts reading a report request.
pub fn decode_report(request: &mixer::ReportRequest) -> Result<ReportDecoder<'_>, BatchError> {
    check_global_word_count(request.global_word_count)?;
    let independent = request.repeated_attributes_semantics == Semantics::IndependentEncoding as i32;
    Ok(ReportDecoder { request, next: 0, independent, bag: MapBag::new() })
}

impl ReportDecoder<'_> {
    /// The next element, or `None` after the last.
    pub fn next_element(&mut self) -> Option<Element<'_>> {
        let element = self.request.attributes.get(self.next)?;
        let first = self.next == 0;
        self.next += 1;
        let words = if element.words.is_empty() { &self.request.default_words } else { &element.words };
        if self.independent || first {
            let (bag, problems) = decode_lenient(element, words);
            self.bag = bag;
            return Some(Element::Decoded { bag: &self.bag, problems });
        }
        // A later delta element: applied over the batch so far, strictly.
        match decode_into(&mut self.bag, element, words) {
            Ok(()) => Some(Element::Decoded { bag: &self.bag, problems: Vec::new() }),
            Err(errors) => {
                Some(Element::Invalid(format!("request could not be processed due to invalid attributes: {errors}")))
            }
        }
    }
}

/// Builds report requests from attribute sets.
#[derive(Debug, Clone)]
pub struct BatchEncoder {
    global_word_count: usize,
    bags: Vec<MapBag>,
    prefer_delta: bool,
}

impl BatchEncoder {
    /// Every element complete, as 1.4's proxies sent.
    pub fn independent(global_word_count: usize) -> BatchEncoder {
        BatchEncoder { global_word_count, bags: Vec::new(), prefer_delta: false }
    }

    /// Each element only what changed since the previous one. An attribute that disappears
    /// cannot be said in this form, so such a batch is sent with complete elements instead.
    pub fn delta(global_word_count: usize) -> BatchEncoder {
        BatchEncoder { prefer_delta: true, ..BatchEncoder::independent(global_word_count) }
    }

    pub fn len(&self) -> usize {
        self.bags.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bags.is_empty()
    }

    /// Adds one attribute set.
    pub fn add(&mut self, bag: MapBag) {
        self.bags.push(bag);
    }

    /// The request for everything added, and a fresh start.
    pub fn finish(&mut self) -> mixer::ReportRequest {
        let bags = std::mem::take(&mut self.bags);
        let delta = self.prefer_delta
            && bags.windows(2).all(|pair| pair[0].sorted().iter().all(|(name, _)| pair[1].contains(name)));
        let mut dictionary = MessageDictionary::with_global_word_count(self.global_word_count);
        let mut attributes = Vec::with_capacity(bags.len());
        let mut previous: Option<&MapBag> = None;
        for bag in &bags {
            let element = match previous {
                Some(previous) if delta => {
                    let mut changed = MapBag::new();
                    for (name, value) in bag.sorted() {
                        if previous.get_value(name).is_none_or(|old| !old.same_as(value)) {
                            changed.set(name, value.clone());
                        }
                    }
                    encode_with(&changed, &mut dictionary)
                }
                _ => encode_with(bag, &mut dictionary),
            };
            attributes.push(element);
            previous = Some(bag);
        }
        let semantics = if delta { Semantics::DeltaEncoding } else { Semantics::IndependentEncoding };
        mixer::ReportRequest {
            attributes,
            default_words: dictionary.words().to_vec(),
            global_word_count: u32::try_from(dictionary.global_word_count()).unwrap_or(u32::MAX),
            repeated_attributes_semantics: semantics as i32,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::Value;
    use crate::wire::compressed::encode;

    fn numbered(values: &[(&str, i64)]) -> MapBag {
        let mut bag = MapBag::new();
        for (name, value) in values {
            bag.set(*name, Value::Int64(*value));
        }
        bag
    }

    fn bags(mut decoder: ReportDecoder<'_>) -> Vec<MapBag> {
        let mut bags = Vec::new();
        while let Some(element) = decoder.next_element() {
            match element {
                Element::Decoded { bag, problems } if problems.is_empty() => bags.push(bag.clone()),
                other => panic!("not decoded cleanly: {other:?}"),
            }
        }
        bags
    }

    fn all(mut decoder: ReportDecoder<'_>) -> Vec<Result<MapBag, String>> {
        let mut elements = Vec::new();
        while let Some(element) = decoder.next_element() {
            elements.push(match element {
                Element::Decoded { bag, .. } => Ok(bag.clone()),
                Element::Invalid(message) => Err(message),
            });
        }
        elements
    }

    #[test]
    fn delta_elements_build_on_the_ones_before() {
        // 1.4.6's report test: A1..A4, then A2 changes, then A4 changes.
        let first = numbered(&[("A1", 25), ("A2", 26), ("A3", 27), ("A4", 28)]);
        let second = numbered(&[("A1", 25), ("A2", 42), ("A3", 27), ("A4", 28)]);
        let third = numbered(&[("A1", 25), ("A2", 42), ("A3", 27), ("A4", 31_415_692)]);
        let mut encoder = BatchEncoder::delta(222);
        for bag in [&first, &second, &third] {
            encoder.add(bag.clone());
        }
        let request = encoder.finish();
        assert_eq!(request.repeated_attributes_semantics, Semantics::DeltaEncoding as i32);
        assert_eq!(request.attributes[1].int64s.len(), 1, "only A2 travels in the second element");
        assert!(request.attributes.iter().all(|element| element.words.is_empty()));
        assert_eq!(bags(decode_report(&request).expect("decodes")), vec![first, second, third]);
    }

    #[test]
    fn independent_elements_stand_alone() {
        let elements = [numbered(&[("A1", 25), ("A2", 26)]), numbered(&[("A2", 42)]), numbered(&[("A4", 3)])];
        let mut encoder = BatchEncoder::independent(222);
        for bag in &elements {
            encoder.add(bag.clone());
        }
        let request = encoder.finish();
        assert_eq!(request.repeated_attributes_semantics, Semantics::IndependentEncoding as i32);
        assert_eq!(request.default_words, ["A1", "A2", "A4"]);
        assert_eq!(bags(decode_report(&request).expect("decodes")), elements.to_vec());
    }

    #[test]
    fn a_batch_that_loses_an_attribute_is_sent_complete() {
        let mut encoder = BatchEncoder::delta(222);
        encoder.add(numbered(&[("A1", 1), ("A2", 2)]));
        encoder.add(numbered(&[("A1", 1)]));
        let request = encoder.finish();
        assert_eq!(request.repeated_attributes_semantics, Semantics::IndependentEncoding as i32);
        assert_eq!(bags(decode_report(&request).expect("decodes"))[1], numbered(&[("A1", 1)]));
    }

    #[test]
    fn a_bad_later_delta_element_is_refused_and_the_rest_go_on() {
        let mut request =
            mixer::ReportRequest { attributes: vec![encode(&numbered(&[("A1", 1)]), 222)], ..Default::default() };
        request.attributes.push(mixer::CompressedAttributes { int64s: [(4_646_464, 1)].into(), ..Default::default() });
        request.attributes.push(mixer::CompressedAttributes {
            words: vec!["A1".into()],
            int64s: [(-1, 2)].into(),
            ..Default::default()
        });
        let elements = all(decode_report(&request).expect("decodes"));
        assert_eq!(
            elements[1],
            Err("request could not be processed due to invalid attributes: 1 error occurred:\n\t* attribute index 4646464 is not defined in the available dictionaries\n\n".to_string())
        );
        assert_eq!(elements[2].as_ref().map(|bag| bag.get_value("A1").cloned()), Ok(Some(Value::Int64(2))));
    }

    #[test]
    fn a_first_element_with_bad_indices_only_loses_those_attributes() {
        let request = mixer::ReportRequest {
            attributes: vec![mixer::CompressedAttributes {
                words: vec!["N1".into()],
                strings: [(42_000, 1), (-1, 42_000)].into(),
                bools: [(-1, true)].into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let mut decoder = decode_report(&request).expect("decodes");
        let Some(Element::Decoded { bag, problems }) = decoder.next_element() else { panic!("decoded") };
        assert_eq!(problems.len(), 2);
        assert_eq!(bag.get_value("N1"), Some(&Value::Bool(true)));
    }

    #[test]
    fn a_caller_with_more_global_words_is_refused() {
        let request = mixer::ReportRequest { global_word_count: 9999, ..Default::default() };
        assert_eq!(
            decode_report(&request).map(|_| ()).expect_err("refused").to_string(),
            "inconsistent global dictionary versions used: mixer knows 222 words, caller knows 9999"
        );
    }
}
