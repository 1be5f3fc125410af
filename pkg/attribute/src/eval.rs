//! The evaluator: runs a [`Compiled`] expression against a [`Bag`], telling a [`Tracker`] of every
//! lookup. Values borrow from the bag and the expression, so the common rule shapes
//! (`destination.labels["app"] == "ratings"`, `match(request.headers["cookie"], "session=*")`,
//! `source.ip | ip("0.0.0.0")` with the address present) allocate nothing.
//!
//! Absence follows 1.4: reading an absent attribute is `lookup failed: 'name'` except on the
//! left of `|`, which takes the first alternative that resolves; a missing map key is `""`.

use std::borrow::Cow;

use crate::bag::{Bag, Lookup, Tracker};
use crate::externs;
use crate::program::{Compiled, Node, Order};
use crate::value::{canonical_ip, StringMap, Value, ValueType};

/// An evaluation that failed, with 1.4's message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvalError {
    #[error("lookup failed: '{0}'")]
    LookupFailed(String),
    /// The bag holds a value of another type than the manifest says.
    #[error("error converting value to {expected}: '{value}'")]
    WrongType { expected: &'static str, value: String },
    /// A function refused its input (`ip("x")`, a bad regex, …).
    #[error("{0}")]
    Function(String),
}

type Evaluated<'a> = Result<Value<'a>, EvalError>;

/// A map value and the attribute it came from (for tracking its keys).
type SourcedMap<'a> = (Option<&'a str>, Cow<'a, StringMap>);

impl Compiled {
    /// Evaluates against `bag`, reporting lookups to `tracker`.
    pub fn evaluate<'a>(&'a self, bag: &'a dyn Bag, tracker: &mut dyn Tracker) -> Evaluated<'a> {
        Evaluator { bag, tracker }.eval(&self.root)
    }

    /// Evaluates a boolean expression (a rule's `match`).
    pub fn evaluate_bool(&self, bag: &dyn Bag, tracker: &mut dyn Tracker) -> Result<bool, EvalError> {
        match self.evaluate(bag, tracker)? {
            Value::Bool(value) => Ok(value),
            other => Err(EvalError::WrongType { expected: "bool", value: other.to_string() }),
        }
    }

    /// Evaluates a string expression, borrowing where it can.
    pub fn evaluate_string<'a>(
        &'a self,
        bag: &'a dyn Bag,
        tracker: &mut dyn Tracker,
    ) -> Result<Cow<'a, str>, EvalError> {
        match self.evaluate(bag, tracker)? {
            Value::String(text) | Value::DnsName(text) | Value::EmailAddress(text) | Value::Uri(text) => Ok(text),
            other => Ok(Cow::Owned(other.to_string())),
        }
    }
}

struct Evaluator<'a, 't> {
    bag: &'a dyn Bag,
    tracker: &'t mut dyn Tracker,
}

impl<'a> Evaluator<'a, '_> {
    fn eval(&mut self, node: &'a Node) -> Evaluated<'a> {
        match node {
            Node::Constant(value) => Ok(value.borrowed()),
            Node::Attribute { name, value_type } => {
                self.attribute(name, *value_type)?.ok_or_else(|| EvalError::LookupFailed(name.clone()))
            }
            Node::Index { map, key } => {
                let (source, map) = self.map(map)?;
                let key = self.string(key)?;
                Ok(Value::String(self.lookup_key(source, &map, &key).unwrap_or(Cow::Borrowed(""))))
            }
            Node::Default(alternatives) => {
                let (last, first) =
                    alternatives.split_last().ok_or_else(|| EvalError::Function("empty default".into()))?;
                for alternative in first {
                    if let Some(value) = self.resolve(alternative)? {
                        return Ok(value);
                    }
                }
                self.eval(last)
            }
            Node::Equal { negate, value_type, left, right } => {
                let left = self.eval(left)?;
                let right = self.eval(right)?;
                Ok(Value::Bool(equal(*value_type, &left, &right)? != *negate))
            }
            Node::Compare { order, left, right } => {
                let left = self.eval(left)?;
                let right = self.eval(right)?;
                let ordering = compare(&left, &right);
                Ok(Value::Bool(match order {
                    Order::Less => ordering.is_some_and(|o| o.is_lt()),
                    Order::LessEq => ordering.is_some_and(|o| o.is_le()),
                    Order::Greater => ordering.is_some_and(|o| o.is_gt()),
                    Order::GreaterEq => ordering.is_some_and(|o| o.is_ge()),
                }))
            }
            Node::And(left, right) => Ok(Value::Bool(self.boolean(left)? && self.boolean(right)?)),
            Node::Or(left, right) => Ok(Value::Bool(self.boolean(left)? || self.boolean(right)?)),
            Node::Add(left, right) => {
                let left = self.eval(left)?;
                let right = self.eval(right)?;
                Ok(add(left, right))
            }
            Node::Conditional(condition, then, otherwise) => {
                if self.boolean(condition)? {
                    self.eval(then)
                } else {
                    self.eval(otherwise)
                }
            }
            Node::Size(text) => {
                let text = self.string(text)?;
                Ok(Value::Int64(i64::try_from(text.len()).unwrap_or(i64::MAX)))
            }
            Node::Matches { pattern, regex, subject } => {
                let pattern = self.string(pattern)?;
                let subject = self.string(subject)?;
                let matched = match regex {
                    Some(compiled) => compiled.is_match(&subject),
                    None => regex::Regex::new(&pattern)
                        .map_err(|error| EvalError::Function(format!("error parsing regexp: {error}")))?
                        .is_match(&subject),
                };
                Ok(Value::Bool(matched))
            }
            Node::Call { function, args } => {
                let mut values: [Option<Value<'a>>; 3] = [None, None, None];
                for (slot, arg) in values.iter_mut().zip(args) {
                    *slot = Some(self.eval(arg)?);
                }
                externs::call(*function, values).map_err(EvalError::Function)
            }
        }
    }

    /// The value of an alternative of `|`, or `None` when it does not resolve.
    fn resolve(&mut self, node: &'a Node) -> Result<Option<Value<'a>>, EvalError> {
        match node {
            Node::Attribute { name, value_type } => self.attribute(name, *value_type),
            Node::Index { map, key } => {
                let Some((source, map)) = self.resolve_map(map)? else { return Ok(None) };
                let Some(key) = self.resolve(key)? else { return Ok(None) };
                let key = value_text(key);
                Ok(self.lookup_key(source, &map, &key).map(Value::String))
            }
            Node::Default(alternatives) => {
                for alternative in alternatives {
                    if let Some(value) = self.resolve(alternative)? {
                        return Ok(Some(value));
                    }
                }
                Ok(None)
            }
            other => self.eval(other).map(Some),
        }
    }

    /// Looks `name` up, checks its value against its declared type, and tells the tracker.
    fn attribute(&mut self, name: &str, value_type: ValueType) -> Result<Option<Value<'a>>, EvalError> {
        let Some(value) = self.bag.get(name) else {
            self.tracker.attribute(name, Lookup::Absent);
            return Ok(None);
        };
        let lookup = if matches!(value, Value::StringMap(_)) { Lookup::FoundMap } else { Lookup::Found };
        self.tracker.attribute(name, lookup);
        coerce(value, value_type).map(Some)
    }

    fn map(&mut self, node: &'a Node) -> Result<SourcedMap<'a>, EvalError> {
        match node {
            Node::Attribute { name, .. } => match self.eval(node)? {
                Value::StringMap(map) => Ok((Some(name.as_str()), map)),
                other => Err(EvalError::WrongType { expected: "string map", value: other.to_string() }),
            },
            Node::Default(alternatives) => {
                let (last, first) =
                    alternatives.split_last().ok_or_else(|| EvalError::Function("empty default".into()))?;
                for alternative in first {
                    if let Some(found) = self.resolve_map(alternative)? {
                        return Ok(found);
                    }
                }
                self.map(last)
            }
            other => match self.eval(other)? {
                Value::StringMap(map) => Ok((None, map)),
                value => Err(EvalError::WrongType { expected: "string map", value: value.to_string() }),
            },
        }
    }

    fn resolve_map(&mut self, node: &'a Node) -> Result<Option<SourcedMap<'a>>, EvalError> {
        match node {
            Node::Attribute { name, value_type } => match self.attribute(name, *value_type)? {
                Some(Value::StringMap(map)) => Ok(Some((Some(name.as_str()), map))),
                Some(other) => Err(EvalError::WrongType { expected: "string map", value: other.to_string() }),
                None => Ok(None),
            },
            Node::Default(alternatives) => {
                for alternative in alternatives {
                    if let Some(found) = self.resolve_map(alternative)? {
                        return Ok(Some(found));
                    }
                }
                Ok(None)
            }
            other => self.map(other).map(Some),
        }
    }

    /// A key of a map, telling the tracker when the map is an attribute.
    fn lookup_key(&mut self, source: Option<&str>, map: &Cow<'a, StringMap>, key: &str) -> Option<Cow<'a, str>> {
        let found = match map {
            Cow::Borrowed(map) => map.get(key).map(|value| Cow::Borrowed(value.as_str())),
            Cow::Owned(map) => map.get(key).map(|value| Cow::Owned(value.clone())),
        };
        if let Some(source) = source {
            self.tracker.map_key(source, key, found.is_some());
        }
        found
    }

    fn boolean(&mut self, node: &'a Node) -> Result<bool, EvalError> {
        match self.eval(node)? {
            Value::Bool(value) => Ok(value),
            other => Err(EvalError::WrongType { expected: "bool", value: other.to_string() }),
        }
    }

    fn string(&mut self, node: &'a Node) -> Result<Cow<'a, str>, EvalError> {
        Ok(value_text(self.eval(node)?))
    }
}

fn value_text(value: Value<'_>) -> Cow<'_, str> {
    match value {
        Value::String(text) | Value::DnsName(text) | Value::EmailAddress(text) | Value::Uri(text) => text,
        other => Cow::Owned(other.to_string()),
    }
}

/// A bag value as the type the manifest declares, or the error 1.4 gave for a mismatch.
fn coerce(value: Value<'_>, value_type: ValueType) -> Evaluated<'_> {
    let wrong = |expected: &'static str, value: &Value<'_>| EvalError::WrongType { expected, value: value.to_string() };
    Ok(match (value_type, value) {
        (ValueType::String, value @ Value::String(_)) => value,
        (ValueType::String, other) => return Err(wrong("string", &other)),
        (ValueType::DnsName, Value::String(text) | Value::DnsName(text)) => Value::DnsName(text),
        (ValueType::EmailAddress, Value::String(text) | Value::EmailAddress(text)) => Value::EmailAddress(text),
        (ValueType::Uri, Value::String(text) | Value::Uri(text)) => Value::Uri(text),
        (ValueType::DnsName | ValueType::EmailAddress | ValueType::Uri, other) => return Err(wrong("string", &other)),
        (ValueType::Bool, value @ Value::Bool(_)) => value,
        (ValueType::Bool, other) => return Err(wrong("bool", &other)),
        (ValueType::Int64, Value::Int64(value) | Value::Duration(value)) => Value::Int64(value),
        (ValueType::Duration, Value::Int64(value) | Value::Duration(value)) => Value::Duration(value),
        (ValueType::Int64 | ValueType::Duration, other) => return Err(wrong("integer or duration", &other)),
        (ValueType::Double, value @ Value::Double(_)) => value,
        (ValueType::Double, other) => return Err(wrong("double", &other)),
        (ValueType::IpAddress, Value::IpAddress(bytes) | Value::Bytes(bytes)) => Value::IpAddress(bytes),
        (ValueType::IpAddress, other) => return Err(wrong("ip address", &other)),
        (ValueType::Timestamp, value @ Value::Timestamp(_)) => value,
        (ValueType::Timestamp, other) => return Err(wrong("timestamp", &other)),
        (ValueType::StringMap, value @ Value::StringMap(_)) => value,
        (ValueType::StringMap, other) => return Err(wrong("string map", &other)),
        (ValueType::Unspecified, value) => value,
    })
}

/// `==` by type, as 1.4 compared: names and addresses by meaning, the rest exactly.
fn equal(value_type: ValueType, left: &Value<'_>, right: &Value<'_>) -> Result<bool, EvalError> {
    Ok(match value_type {
        ValueType::DnsName => externs::dns_names_equal(text(left), text(right)).map_err(EvalError::Function)?,
        ValueType::EmailAddress => externs::emails_equal(text(left), text(right)).map_err(EvalError::Function)?,
        ValueType::Uri => externs::uris_equal(text(left), text(right)).map_err(EvalError::Function)?,
        ValueType::IpAddress => match (left.as_ip(), right.as_ip()) {
            (Some(a), Some(b)) => canonical_ip(a) == canonical_ip(b),
            _ => false,
        },
        _ => match (left, right) {
            (Value::Int64(a), Value::Int64(b)) => a == b,
            (Value::Double(a), Value::Double(b)) => a == b,
            (Value::Bool(a), Value::Bool(b)) => a == b,
            (Value::Timestamp(a), Value::Timestamp(b)) => a == b,
            (a, b) => a.as_str().is_some() && a.as_str() == b.as_str(),
        },
    })
}

fn text<'v>(value: &'v Value<'_>) -> &'v str {
    value.as_str().unwrap_or_default()
}

fn compare(left: &Value<'_>, right: &Value<'_>) -> Option<std::cmp::Ordering> {
    match (left, right) {
        (Value::Int64(a), Value::Int64(b)) => Some(a.cmp(b)),
        (Value::Double(a), Value::Double(b)) => a.partial_cmp(b),
        (Value::Timestamp(a), Value::Timestamp(b)) => Some(a.cmp(b)),
        (a, b) => Some(a.as_str()?.as_bytes().cmp(b.as_str()?.as_bytes())),
    }
}

fn add<'a>(left: Value<'a>, right: Value<'_>) -> Value<'a> {
    match (left, right) {
        (Value::Int64(a), Value::Int64(b)) => Value::Int64(a.wrapping_add(b)),
        (Value::Double(a), Value::Double(b)) => Value::Double(a + b),
        (left, right) => {
            let joined = Cow::Owned(format!("{}{}", text(&left), text(&right)));
            match left {
                Value::DnsName(_) => Value::DnsName(joined),
                Value::EmailAddress(_) => Value::EmailAddress(joined),
                Value::Uri(_) => Value::Uri(joined),
                _ => Value::String(joined),
            }
        }
    }
}
