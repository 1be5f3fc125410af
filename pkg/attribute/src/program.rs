//! A type-checked expression: the tree [`crate::check`] builds and [`crate::eval`] walks, each
//! node already specialised for its operand types.

use crate::externs::Function;
use crate::value::{OwnedValue, ValueType};

/// A type-checked expression, ready to evaluate against any bag.
#[derive(Debug, Clone)]
pub struct Compiled {
    pub(crate) text: String,
    pub(crate) root: Node,
    pub(crate) result: ValueType,
}

impl Compiled {
    /// The expression's source text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The type every evaluation returns.
    pub fn result_type(&self) -> ValueType {
        self.result
    }
}

/// A type-checked node.
#[derive(Debug, Clone)]
pub(crate) enum Node {
    Constant(OwnedValue),
    Attribute {
        name: String,
        value_type: ValueType,
    },
    Index {
        map: Box<Node>,
        key: Box<Node>,
    },
    /// `a | b | c`: the first that resolves, the last evaluated as usual.
    Default(Vec<Node>),
    Equal {
        negate: bool,
        value_type: ValueType,
        left: Box<Node>,
        right: Box<Node>,
    },
    Compare {
        order: Order,
        left: Box<Node>,
        right: Box<Node>,
    },
    And(Box<Node>, Box<Node>),
    Or(Box<Node>, Box<Node>),
    Add(Box<Node>, Box<Node>),
    Conditional(Box<Node>, Box<Node>, Box<Node>),
    Size(Box<Node>),
    /// `pattern.matches(subject)`, the pattern compiled once when it is a constant.
    Matches {
        pattern: Box<Node>,
        regex: Option<regex::Regex>,
        subject: Box<Node>,
    },
    Call {
        function: Function,
        args: Vec<Node>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Order {
    Less,
    LessEq,
    Greater,
    GreaterEq,
}
