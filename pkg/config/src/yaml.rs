//! Reads multi-document YAML (or JSON) into objects while remembering where each came from, so
//! that every later error can say `FILE:LINE`. A `kind: List` document is expanded into its
//! items, as kubectl does. Empty documents and comment-only documents are skipped.

use serde_json::Value;

use crate::object::Object;

/// An object read from a file, with the line its document starts on (1-based).
#[derive(Debug, Clone, PartialEq)]
pub struct SourceObject {
    pub source: String,
    pub line: usize,
    pub object: Object,
}

/// A document that could not be read as an object.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{source_name}:{line}: {message}")]
pub struct ParseError {
    pub source_name: String,
    pub line: usize,
    pub message: String,
}

/// One `---`-separated document of a YAML stream, with its first line.
struct RawDocument<'a> {
    text: &'a str,
    first_line: usize,
}

/// Splits a YAML stream on document markers (`---` at the start of a line), keeping line numbers.
fn split_documents(text: &str) -> Vec<RawDocument<'_>> {
    let mut documents = Vec::new();
    let mut start_offset = 0;
    let mut start_line = 1;
    let mut offset = 0;
    for (index, line) in text.split_inclusive('\n').enumerate() {
        let trimmed = line.trim_end();
        let is_marker = trimmed == "---" || trimmed.starts_with("--- ") || trimmed.starts_with("---\t");
        let is_end_marker = trimmed == "...";
        if is_marker || is_end_marker {
            documents.push(RawDocument { text: &text[start_offset..offset], first_line: start_line });
            start_offset = offset + line.len();
            start_line = index + 2;
        }
        offset += line.len();
    }
    documents.push(RawDocument { text: &text[start_offset..], first_line: start_line });
    documents
}

/// The line of the first line in `text` that holds content (not blank, not a comment).
fn first_content_line(document: &RawDocument<'_>) -> usize {
    document
        .text
        .lines()
        .position(|line| {
            let trimmed = line.trim();
            !trimmed.is_empty() && !trimmed.starts_with('#')
        })
        .map_or(document.first_line, |index| document.first_line + index)
}

/// Parses every object in `text`, naming it `source_name` in results and errors.
pub fn parse_objects(source_name: &str, text: &str) -> (Vec<SourceObject>, Vec<ParseError>) {
    let mut objects = Vec::new();
    let mut errors = Vec::new();
    for document in split_documents(text) {
        let line = first_content_line(&document);
        let error_at =
            |line: usize, message: String| ParseError { source_name: source_name.to_string(), line, message };
        let value: Value = match serde_yaml::from_str(document.text) {
            Ok(value) => value,
            Err(error) => {
                let error_line = error.location().map_or(line, |location| document.first_line + location.line() - 1);
                errors.push(error_at(error_line, format!("invalid YAML: {error}")));
                continue;
            }
        };
        if value.is_null() {
            continue;
        }
        match value_to_objects(value) {
            Ok(found) => objects.extend(found.into_iter().map(|object| SourceObject {
                source: source_name.to_string(),
                line,
                object,
            })),
            Err(error) => errors.push(error_at(line, error.to_string())),
        }
    }
    (objects, errors)
}

/// Why a document is not an object.
#[derive(Debug, thiserror::Error)]
enum DocumentError {
    #[error("a document must be a mapping with apiVersion, kind and metadata")]
    NotAMapping,
    #[error("{0} must be a non-empty string")]
    EmptyField(&'static str),
    #[error("missing {0}")]
    MissingField(&'static str),
    #[error("items of a List must be a sequence")]
    ItemsNotASequence,
    #[error("items[{index}]: {source}")]
    Item { index: usize, source: Box<DocumentError> },
    #[error("invalid object: {0}")]
    Object(#[from] serde_json::Error),
}

/// Turns one document's value into objects, expanding `kind: List`.
fn value_to_objects(value: Value) -> Result<Vec<Object>, DocumentError> {
    let Value::Object(map) = &value else {
        return Err(DocumentError::NotAMapping);
    };
    for required in ["apiVersion", "kind"] {
        match map.get(required) {
            Some(Value::String(text)) if !text.is_empty() => {}
            Some(_) => return Err(DocumentError::EmptyField(required)),
            None => return Err(DocumentError::MissingField(required)),
        }
    }
    if map.get("kind").and_then(Value::as_str) == Some("List") {
        let items = match map.get("items") {
            Some(Value::Array(items)) => items.clone(),
            None | Some(Value::Null) => Vec::new(),
            Some(_) => return Err(DocumentError::ItemsNotASequence),
        };
        let mut objects = Vec::new();
        for (index, item) in items.into_iter().enumerate() {
            let mut found =
                value_to_objects(item).map_err(|source| DocumentError::Item { index, source: Box::new(source) })?;
            objects.append(&mut found);
        }
        return Ok(objects);
    }
    Ok(vec![serde_json::from_value::<Object>(value)?])
}

#[cfg(test)]
mod tests {
    use super::*;

    const STREAM: &str = "\
# leading comment
apiVersion: v1
kind: Service
metadata:
  name: reviews
---
---
# only a comment
---
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts: [reviews]
---
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: ServiceAccount
  metadata: {name: a}
- apiVersion: v1
  kind: ServiceAccount
  metadata: {name: b}
";

    #[test]
    fn documents_keep_their_lines_and_lists_expand() {
        let (objects, errors) = parse_objects("bookinfo.yaml", STREAM);
        assert!(errors.is_empty(), "{errors:?}");
        let summary: Vec<_> = objects.iter().map(|o| (o.object.kind.as_str(), o.object.name(), o.line)).collect();
        assert_eq!(
            summary,
            vec![
                ("Service", "reviews", 2),
                ("VirtualService", "reviews", 10),
                ("ServiceAccount", "a", 17),
                ("ServiceAccount", "b", 17)
            ]
        );
    }

    #[test]
    fn syntax_errors_point_at_the_line() {
        let text = "apiVersion: v1\nkind: Service\nmetadata:\n  name: a\n---\napiVersion: v1\nkind: [unclosed\n";
        let (objects, errors) = parse_objects("bad.yaml", text);
        assert_eq!(objects.len(), 1);
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].source_name, "bad.yaml");
        assert!(errors[0].line >= 7, "line {}", errors[0].line);
        assert!(errors[0].to_string().starts_with("bad.yaml:"), "{}", errors[0]);
    }

    #[test]
    fn missing_kind_is_reported() {
        let (_, errors) = parse_objects("x.yaml", "apiVersion: v1\nmetadata: {name: a}\n");
        assert_eq!(errors[0].message, "missing kind");
        assert_eq!(errors[0].line, 1);
        let (_, errors) = parse_objects("x.yaml", "- a\n- b\n");
        assert!(errors[0].message.contains("mapping"));
    }
}
