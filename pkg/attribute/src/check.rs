//! The type checker: turns a parsed expression and the attribute manifests into a [`Compiled`]
//! program whose every node knows its type, with 1.4's error messages word for word
//! (`EQ(true, $a) arg 2 ($a) typeError got INT64, expected BOOL`, `unknown attribute x`,
//! `internal compiler error -- Add for type not yet implemented: bool`).
//!
//! Operators are functions here as they were in 1.4 (`==` is `EQ`, `|` is `OR`), each with a
//! signature in which `VALUE_TYPE_UNSPECIFIED` is a type variable bound by the first argument
//! that has it. What 1.4's compiler refused after type checking (ordering booleans, comparing
//! durations) is refused the same way.

use std::collections::HashMap;

use crate::expr::{self, Expr, ParseError, UnaryOp};
use crate::externs::Function;
use crate::program::{Compiled, Node, Order};
use crate::value::{OwnedValue, ValueType};

/// Where the checker finds an attribute's type: the attribute manifests in force.
pub trait AttributeTypes {
    fn attribute_type(&self, name: &str) -> Option<ValueType>;
}

impl AttributeTypes for HashMap<String, ValueType> {
    fn attribute_type(&self, name: &str) -> Option<ValueType> {
        self.get(name).copied()
    }
}

impl AttributeTypes for HashMap<&str, ValueType> {
    fn attribute_type(&self, name: &str) -> Option<ValueType> {
        self.get(name).copied()
    }
}

/// An expression that does not parse or does not type-check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompileError {
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// A type error, with 1.4's message.
    #[error("{0}")]
    Type(String),
    /// Type checked, but 1.4's compiler had no code for it.
    #[error("internal compiler error -- {0}")]
    Unsupported(String),
}

impl Compiled {
    /// Parses and type-checks `text` against `types`.
    pub fn new(text: &str, types: &dyn AttributeTypes) -> Result<Compiled, CompileError> {
        let parsed = expr::parse_syntax(text)?;
        let (root, result) = Checker { types }.check(&parsed)?;
        Ok(Compiled { text: text.to_string(), root, result })
    }
}

/// Only the type of `text`, as 1.4's `InferType` gave it for instance params.
pub fn infer_type(text: &str, types: &dyn AttributeTypes) -> Result<ValueType, CompileError> {
    Compiled::new(text, types).map(|compiled| compiled.result_type())
}

/// A function's signature: `UNSPECIFIED` is the type variable.
struct Signature {
    name: &'static str,
    instance: bool,
    target: ValueType,
    args: &'static [ValueType],
    returns: ValueType,
}

use ValueType::{Bool as B, Int64 as I, String as S, StringMap as M, Unspecified as X};

const fn sig(name: &'static str, args: &'static [ValueType], returns: ValueType) -> Signature {
    Signature { name, instance: false, target: X, args, returns }
}

const fn method(name: &'static str, args: &'static [ValueType], returns: ValueType) -> Signature {
    Signature { name, instance: true, target: S, args, returns }
}

const SIGNATURES: &[Signature] = &[
    sig("EQ", &[X, X], B),
    sig("NEQ", &[X, X], B),
    sig("LT", &[X, X], B),
    sig("LEQ", &[X, X], B),
    sig("GT", &[X, X], B),
    sig("GEQ", &[X, X], B),
    sig("LOR", &[B, B], B),
    sig("LAND", &[B, B], B),
    sig("OR", &[X, X], X),
    sig("INDEX", &[M, S], S),
    sig("ADD", &[X, X], X),
    sig("conditional", &[B, X, X], X),
    sig("size", &[S], I),
    sig("ip", &[S], ValueType::IpAddress),
    sig("timestamp", &[S], ValueType::Timestamp),
    sig("dnsName", &[S], ValueType::DnsName),
    sig("email", &[S], ValueType::EmailAddress),
    sig("uri", &[S], ValueType::Uri),
    sig("match", &[S, S], B),
    method("matches", &[S], B),
    method("startsWith", &[S], B),
    method("endsWith", &[S], B),
    sig("emptyStringMap", &[], M),
    sig("conditionalString", &[B, S, S], S),
    sig("toLower", &[S], S),
];

fn signature(name: &str) -> Option<&'static Signature> {
    SIGNATURES.iter().find(|signature| signature.name == name)
}

/// 1.4's internal names for how a type is held at run time.
fn runtime_type_name(value_type: ValueType) -> &'static str {
    match value_type {
        ValueType::String | ValueType::DnsName | ValueType::EmailAddress | ValueType::Uri => "string",
        ValueType::Int64 => "integer",
        ValueType::Double => "double",
        ValueType::Bool => "bool",
        ValueType::Duration => "duration",
        _ => "interface",
    }
}

fn type_name(value_type: ValueType) -> &'static str {
    value_type.as_str_name()
}

struct Checker<'t> {
    types: &'t dyn AttributeTypes,
}

type Checked = Result<(Node, ValueType), CompileError>;

impl Checker<'_> {
    fn check(&self, expr: &Expr) -> Checked {
        match expr {
            Expr::Attribute(name) => match self.types.attribute_type(name) {
                Some(value_type) => Ok((Node::Attribute { name: name.clone(), value_type }, value_type)),
                None => Err(CompileError::Type(format!("unknown attribute {name}"))),
            },
            Expr::Str(text) => Ok(string_constant(text)),
            Expr::Int(value) => Ok((Node::Constant(OwnedValue::Int64(*value)), ValueType::Int64)),
            Expr::BadInt(text) => {
                Err(CompileError::Type(format!("strconv.ParseInt: parsing {text:?}: invalid syntax")))
            }
            Expr::Float(value) => Ok((Node::Constant(OwnedValue::Double(*value)), ValueType::Double)),
            Expr::Bool(value) => Ok((Node::Constant(OwnedValue::Bool(*value)), ValueType::Bool)),
            Expr::Index(map, key) => self.call(expr, "INDEX", None, &[map, key]),
            Expr::Unary(op, operand) => match op {
                UnaryOp::Plus => self.call(expr, "ADD", None, &[operand]),
                other => Err(CompileError::Type(format!("unknown function: {}", other.name()))),
            },
            Expr::Binary(op, left, right) => match op.function() {
                Some(name) => self.call(expr, name, None, &[left, right]),
                None => Err(CompileError::Type(format!("unknown function: {}", op.name()))),
            },
            Expr::Call { function, receiver, args } => {
                let args: Vec<&Expr> = args.iter().collect();
                self.call(expr, function, receiver.as_deref(), &args)
            }
        }
    }

    /// Checks a call as 1.4 did, first failure wins, then builds its node.
    fn call(&self, whole: &Expr, name: &str, receiver: Option<&Expr>, args: &[&Expr]) -> Checked {
        let Some(signature) = signature(name) else {
            return Err(CompileError::Type(format!("unknown function: {name}")));
        };
        let mut bound = X;
        let mut receiver_node = None;
        match receiver {
            Some(_) if !signature.instance => {
                return Err(CompileError::Type(format!("invoking regular function on instance method: {name}")));
            }
            Some(receiver) => {
                let (node, receiver_type) = self.check(receiver)?;
                if signature.target == X {
                    bound = receiver_type;
                } else if receiver_type != signature.target {
                    return Err(CompileError::Type(format!(
                        "{whole} target typeError got {}, expected {}",
                        type_name(receiver_type),
                        type_name(signature.target)
                    )));
                }
                receiver_node = Some(node);
            }
            None if signature.instance => {
                return Err(CompileError::Type(format!("invoking instance method without an instance: {name}")));
            }
            None => {}
        }
        if args.len() < signature.args.len() {
            return Err(CompileError::Type(format!(
                "{whole} arity mismatch. Got {} arg(s), expected {} arg(s)",
                args.len(),
                signature.args.len()
            )));
        }
        // Extra arguments were never refused (nor evaluated) in 1.4.
        let mut nodes = Vec::with_capacity(signature.args.len());
        for (position, (arg, expected)) in args.iter().zip(signature.args).enumerate() {
            let (node, arg_type) = self.check(arg)?;
            let expected = match *expected {
                X if bound == X => {
                    bound = arg_type;
                    arg_type
                }
                X => bound,
                fixed => fixed,
            };
            if arg_type != expected {
                return Err(CompileError::Type(format!(
                    "{whole} arg {} ({arg}) typeError got {}, expected {}",
                    position + 1,
                    type_name(arg_type),
                    type_name(expected)
                )));
            }
            nodes.push(node);
        }
        let returns = if signature.returns == X { bound } else { signature.returns };
        Ok((build(name, receiver_node, nodes, bound)?, returns))
    }
}

/// A string literal, or a duration literal when the text is a Go duration (`"10s"`).
fn string_constant(text: &str) -> (Node, ValueType) {
    if let Some(nanos) = istio_duration::parse_signed_nanos(text).and_then(|nanos| i64::try_from(nanos).ok()) {
        return (Node::Constant(OwnedValue::Duration(nanos)), ValueType::Duration);
    }
    (Node::Constant(OwnedValue::String(text.to_string().into())), ValueType::String)
}

/// The node for a checked call; `operand_type` is the bound type variable.
fn build(name: &str, receiver: Option<Node>, args: Vec<Node>, operand_type: ValueType) -> Result<Node, CompileError> {
    let unsupported = |what: &str| {
        CompileError::Unsupported(format!("{what} for type not yet implemented: {}", runtime_type_name(operand_type)))
    };
    let mut args = args.into_iter();
    let mut next = || Box::new(args.next().unwrap_or(Node::Constant(OwnedValue::Bool(false))));
    let string_like =
        matches!(operand_type, ValueType::String | ValueType::DnsName | ValueType::EmailAddress | ValueType::Uri);
    let node = match name {
        "EQ" | "NEQ" => {
            if matches!(operand_type, ValueType::Duration | ValueType::StringMap) {
                return Err(unsupported("equality"));
            }
            Node::Equal { negate: name == "NEQ", value_type: operand_type, left: next(), right: next() }
        }
        "LT" | "LEQ" | "GT" | "GEQ" => {
            let (order, what) = match name {
                "LT" => (Order::Less, "less than"),
                "LEQ" => (Order::LessEq, "less or equal"),
                "GT" => (Order::Greater, "greater than"),
                _ => (Order::GreaterEq, "greater or equal"),
            };
            if !(string_like || matches!(operand_type, ValueType::Int64 | ValueType::Double | ValueType::Timestamp)) {
                return Err(unsupported(what));
            }
            Node::Compare { order, left: next(), right: next() }
        }
        "LAND" => Node::And(next(), next()),
        "LOR" => Node::Or(next(), next()),
        "OR" => {
            let left = next();
            let right = next();
            // `a | b | c` parses as `OR(OR(a, b), c)`: one chain of alternatives.
            let mut alternatives = match *left {
                Node::Default(inner) => inner,
                other => vec![other],
            };
            alternatives.push(*right);
            Node::Default(alternatives)
        }
        "INDEX" => Node::Index { map: next(), key: next() },
        "ADD" => {
            if !(string_like || matches!(operand_type, ValueType::Int64 | ValueType::Double)) {
                return Err(CompileError::Unsupported(format!(
                    "Add for type not yet implemented: {}",
                    runtime_type_name(operand_type)
                )));
            }
            Node::Add(next(), next())
        }
        "conditional" => Node::Conditional(next(), next(), next()),
        "size" => Node::Size(next()),
        "matches" => {
            let pattern = Box::new(receiver.unwrap_or(Node::Constant(OwnedValue::String("".into()))));
            let regex = match &*pattern {
                Node::Constant(OwnedValue::String(text)) => regex::Regex::new(text).ok(),
                _ => None,
            };
            Node::Matches { pattern, regex, subject: next() }
        }
        other => {
            let Some(function) = Function::by_name(other) else {
                return Err(CompileError::Type(format!("unknown function: {other}")));
            };
            let mut all: Vec<Node> = receiver.into_iter().collect();
            all.extend(args);
            Node::Call { function, args: all }
        }
    };
    Ok(node)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn types() -> HashMap<&'static str, ValueType> {
        HashMap::from([("a", ValueType::Int64), ("s", ValueType::String), ("m", ValueType::StringMap)])
    }

    #[test]
    fn reports_errors_as_1_4_did() {
        for (text, message) in [
            ("true == a", "EQ(true, $a) arg 2 ($a) typeError got INT64, expected BOOL"),
            ("nosuch == 1", "unknown attribute nosuch"),
            ("a / 2 == 1", "unknown function: QUO"),
            ("!(a == 1)", "unknown function: NOT"),
            ("-1", "unknown function: SUB"),
            ("+s", "ADD($s) arity mismatch. Got 1 arg(s), expected 2 arg(s)"),
            ("s[\"k\"]", "INDEX($s, \"k\") arg 1 ($s) typeError got STRING, expected STRING_MAP"),
            ("a.matches(\"x\")", "$a:matches(\"x\") target typeError got INT64, expected STRING"),
            ("s.toLower()", "invoking regular function on instance method: toLower"),
            ("matches(\"x\")", "invoking instance method without an instance: matches"),
            ("0x10 == a", "strconv.ParseInt: parsing \"0x10\": invalid syntax"),
            ("m == m", "internal compiler error -- equality for type not yet implemented: interface"),
            ("\"1s\" < \"2s\"", "internal compiler error -- less than for type not yet implemented: duration"),
            ("s == \"10s\"", "EQ($s, \"10s\") arg 2 (\"10s\") typeError got DURATION, expected STRING"),
        ] {
            let error = Compiled::new(text, &types()).expect_err(text);
            assert_eq!(error.to_string(), message, "{text}");
        }
    }

    #[test]
    fn infers_types() {
        assert_eq!(infer_type("s | \"x\"", &types()), Ok(ValueType::String));
        assert_eq!(infer_type("conditional(a == 1, m, emptyStringMap())", &types()), Ok(ValueType::StringMap));
        assert_eq!(infer_type("size(s) + 1", &types()), Ok(ValueType::Int64));
        assert_eq!(infer_type("'c'", &types()), Ok(ValueType::String));
        assert_eq!(infer_type("\"10s\"", &types()), Ok(ValueType::Duration));
    }
}
