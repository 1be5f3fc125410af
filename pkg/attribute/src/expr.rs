//! Parser for Mixer's config expression language (CEXL): the Go-syntax expressions used in rule
//! `match` clauses, instance params and header operations, e.g.
//! `match(request.headers["cookie"], "session=*") == false && destination.labels["app"] == "ratings"`.
//!
//! It turns text into an [`Expr`] tree and checks that every function is one Mixer knows. The
//! grammar is the subset of Go's that Mixer 1.4 accepted, with Go's precedence: `|` (the default
//! operator) binds like `+`, tighter than `==`. Operators Go has but CEXL gives no meaning (`*`,
//! `/`, `!`, unary `-`, …) still parse, so that [`crate::check`] can name them as 1.4 did
//! (`unknown function: QUO`). Type checking and evaluation live in [`crate::check`] and
//! [`crate::eval`].

use std::fmt;

/// A parsed expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// An attribute reference such as `request.headers` or `source.ip`.
    Attribute(String),
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    /// An integer literal Go reads but that is not base-10 (`0x10`): an error once checked.
    BadInt(String),
    /// `target[key]`, e.g. `request.headers["user-agent"]`.
    Index(Box<Expr>, Box<Expr>),
    Unary(UnaryOp, Box<Expr>),
    Binary(BinaryOp, Box<Expr>, Box<Expr>),
    /// `function(args…)`, or `receiver.function(args…)` for the receiver forms (`startsWith`, …).
    Call {
        function: String,
        receiver: Option<Box<Expr>>,
        args: Vec<Expr>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnaryOp {
    Not,
    Negate,
    Plus,
    /// `^x`
    Complement,
    /// `&x`
    Address,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryOp {
    /// `|`: the first operand that is defined.
    Default,
    Or,
    And,
    Eq,
    NotEq,
    Less,
    LessEq,
    Greater,
    GreaterEq,
    Add,
    Sub,
    Mul,
    Quo,
    Rem,
    ShiftLeft,
    ShiftRight,
    BitAnd,
    BitAndNot,
    BitXor,
}

/// The functions Mixer 1.4 provides (free-standing and receiver forms).
pub const KNOWN_FUNCTIONS: &[&str] = &[
    "match",
    "matches",
    "startsWith",
    "endsWith",
    "toLower",
    "size",
    "conditional",
    "conditionalString",
    "emptyStringMap",
    "ip",
    "timestamp",
    "dnsName",
    "email",
    "uri",
    "ipEqual",
    "timestamp_equal",
    "dnsName_equal",
    "email_equal",
    "uri_equal",
    "reverse",
    "extract",
    "toUpper",
    "split",
];

/// A parse failure with the byte offset where it happened; shown as 1.4 showed it, with a
/// one-based `line:column`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unable to parse expression '{source_text}': 1:{column}: {reason}", column = position + 1)]
pub struct ParseError {
    pub source_text: String,
    pub position: usize,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    Str(String),
    Int(i64),
    BadInt(String),
    Float(f64),
    Punct(&'static str),
    End,
}

struct Lexer<'a> {
    text: &'a str,
    position: usize,
}

const PUNCTUATION: &[&str] = &[
    "||", "&&", "==", "!=", "<=", ">=", "<<", ">>", "&^", "|", "<", ">", "!", "+", "-", "*", "/", "%", "&", "^", "(",
    ")", "[", "]", ".", ",",
];

impl<'a> Lexer<'a> {
    fn tokens(text: &'a str) -> Result<Vec<(usize, Token)>, (usize, String)> {
        let mut lexer = Lexer { text, position: 0 };
        let mut tokens = Vec::new();
        loop {
            lexer.skip_space();
            let start = lexer.position;
            let token = lexer.next_token()?;
            let done = token == Token::End;
            tokens.push((start, token));
            if done {
                return Ok(tokens);
            }
        }
    }

    fn rest(&self) -> &'a str {
        &self.text[self.position..]
    }

    fn skip_space(&mut self) {
        let trimmed = self.rest().trim_start();
        self.position = self.text.len() - trimmed.len();
    }

    fn next_token(&mut self) -> Result<Token, (usize, String)> {
        let rest = self.rest();
        let Some(first) = rest.chars().next() else { return Ok(Token::End) };
        if first.is_ascii_alphabetic() || first == '_' || first == '$' {
            let length =
                rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '$')).unwrap_or(rest.len());
            self.position += length;
            return Ok(Token::Ident(rest[..length].to_string()));
        }
        if first.is_ascii_digit() {
            let length =
                rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '.' || c == '_')).unwrap_or(rest.len());
            let literal = &rest[..length];
            let start = self.position;
            self.position += length;
            if let Ok(value) = literal.parse::<i64>() {
                return Ok(Token::Int(value));
            }
            if is_go_int_literal(literal) {
                return Ok(Token::BadInt(literal.to_string()));
            }
            return literal
                .parse::<f64>()
                .map(Token::Float)
                .map_err(|_| (start, format!("invalid number {literal:?}")));
        }
        if first == '"' {
            return self.quoted_string();
        }
        if first == '`' {
            let start = self.position;
            let Some(end) = rest[1..].find('`') else { return Err((start, "unterminated raw string".to_string())) };
            self.position += end + 2;
            return Ok(Token::Str(rest[1..=end].to_string()));
        }
        if first == '\'' {
            return self.char_literal();
        }
        for punct in PUNCTUATION {
            if rest.starts_with(punct) {
                self.position += punct.len();
                return Ok(Token::Punct(punct));
            }
        }
        if first == '=' {
            return Err((self.position, "expected '==', found '='".to_string()));
        }
        Err((self.position, format!("illegal character U+{:04X} '{first}'", u32::from(first))))
    }

    /// Go's rune literal (`'a'`), which Mixer reads as a one-character string.
    fn char_literal(&mut self) -> Result<Token, (usize, String)> {
        let start = self.position;
        let rest = &self.rest()[1..];
        let Some(end) = rest.find('\'') else { return Err((start, "rune literal not terminated".to_string())) };
        let body = &rest[..end];
        let mut chars = body.chars();
        match (chars.next(), chars.next()) {
            (Some(c), None) => {
                self.position += end + 2;
                Ok(Token::Str(c.to_string()))
            }
            _ => Err((start, "illegal rune literal".to_string())),
        }
    }

    fn quoted_string(&mut self) -> Result<Token, (usize, String)> {
        let start = self.position;
        let mut value = String::new();
        let mut chars = self.rest().char_indices().skip(1);
        while let Some((offset, c)) = chars.next() {
            match c {
                '"' => {
                    self.position += offset + 1;
                    return Ok(Token::Str(value));
                }
                '\\' => {
                    let Some((_, escaped)) = chars.next() else { break };
                    value.push(match escaped {
                        'n' => '\n',
                        't' => '\t',
                        'r' => '\r',
                        '0' => '\0',
                        other => other,
                    });
                }
                other => value.push(other),
            }
        }
        Err((start, "unterminated string".to_string()))
    }
}

struct Parser {
    tokens: Vec<(usize, Token)>,
    next: usize,
}

type Parsed = Result<Expr, (usize, String)>;

impl Parser {
    fn peek(&self) -> &Token {
        &self.tokens[self.next.min(self.tokens.len() - 1)].1
    }

    fn offset(&self) -> usize {
        self.tokens[self.next.min(self.tokens.len() - 1)].0
    }

    fn advance(&mut self) -> Token {
        let token = self.peek().clone();
        self.next += 1;
        token
    }

    fn eat(&mut self, punct: &str) -> bool {
        if matches!(self.peek(), Token::Punct(p) if *p == punct) {
            self.next += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, punct: &str) -> Result<(), (usize, String)> {
        if self.eat(punct) {
            Ok(())
        } else {
            Err((self.offset(), format!("expected {punct:?}, found {}", describe(self.peek()))))
        }
    }

    fn binary_level(&mut self, level: usize) -> Parsed {
        const LEVELS: &[&[(&str, BinaryOp)]] = &[
            &[("||", BinaryOp::Or)],
            &[("&&", BinaryOp::And)],
            &[
                ("==", BinaryOp::Eq),
                ("!=", BinaryOp::NotEq),
                ("<=", BinaryOp::LessEq),
                (">=", BinaryOp::GreaterEq),
                ("<", BinaryOp::Less),
                (">", BinaryOp::Greater),
            ],
            &[("|", BinaryOp::Default), ("+", BinaryOp::Add), ("-", BinaryOp::Sub), ("^", BinaryOp::BitXor)],
            &[
                ("*", BinaryOp::Mul),
                ("/", BinaryOp::Quo),
                ("%", BinaryOp::Rem),
                ("<<", BinaryOp::ShiftLeft),
                (">>", BinaryOp::ShiftRight),
                ("&^", BinaryOp::BitAndNot),
                ("&", BinaryOp::BitAnd),
            ],
        ];
        if level == LEVELS.len() {
            return self.unary();
        }
        let mut left = self.binary_level(level + 1)?;
        'outer: loop {
            for (punct, op) in LEVELS[level] {
                if self.eat(punct) {
                    let right = self.binary_level(level + 1)?;
                    left = Expr::Binary(*op, Box::new(left), Box::new(right));
                    continue 'outer;
                }
            }
            return Ok(left);
        }
    }

    fn unary(&mut self) -> Parsed {
        if self.eat("!") {
            return Ok(Expr::Unary(UnaryOp::Not, Box::new(self.unary()?)));
        }
        for (punct, op) in
            [("-", UnaryOp::Negate), ("+", UnaryOp::Plus), ("^", UnaryOp::Complement), ("&", UnaryOp::Address)]
        {
            if self.eat(punct) {
                return Ok(Expr::Unary(op, Box::new(self.unary()?)));
            }
        }
        self.postfix()
    }

    fn arguments(&mut self) -> Result<Vec<Expr>, (usize, String)> {
        let mut args = Vec::new();
        if self.eat(")") {
            return Ok(args);
        }
        loop {
            args.push(self.binary_level(0)?);
            if self.eat(")") {
                return Ok(args);
            }
            self.expect(",")?;
        }
    }

    fn postfix(&mut self) -> Parsed {
        let mut expr = self.primary()?;
        loop {
            if self.eat("[") {
                let key = self.binary_level(0)?;
                self.expect("]")?;
                expr = Expr::Index(Box::new(expr), Box::new(key));
            } else if self.eat(".") {
                let offset = self.offset();
                let Token::Ident(name) = self.advance() else {
                    return Err((offset, "expected a name after '.'".to_string()));
                };
                if self.eat("(") {
                    let args = self.arguments()?;
                    expr = Expr::Call { function: name, receiver: Some(Box::new(expr)), args };
                } else if let Expr::Attribute(path) = &mut expr {
                    path.push('.');
                    path.push_str(&name);
                } else {
                    return Err((offset, format!("cannot select .{name} from a non-attribute expression")));
                }
            } else if matches!(expr, Expr::Attribute(_)) && self.eat("(") {
                let Expr::Attribute(function) = expr else { unreachable!("checked just above") };
                let args = self.arguments()?;
                expr = Expr::Call { function, receiver: None, args };
            } else {
                return Ok(expr);
            }
        }
    }

    fn primary(&mut self) -> Parsed {
        let offset = self.offset();
        match self.advance() {
            Token::Ident(name) if name.eq_ignore_ascii_case("true") => Ok(Expr::Bool(true)),
            Token::Ident(name) if name.eq_ignore_ascii_case("false") => Ok(Expr::Bool(false)),
            Token::Ident(name) => Ok(Expr::Attribute(name)),
            Token::Str(value) => Ok(Expr::Str(value)),
            Token::Int(value) => Ok(Expr::Int(value)),
            Token::BadInt(text) => Ok(Expr::BadInt(text)),
            Token::Float(value) => Ok(Expr::Float(value)),
            Token::Punct("(") => {
                let inner = self.binary_level(0)?;
                self.expect(")")?;
                Ok(inner)
            }
            Token::End => Err((offset, "expected operand, found 'EOF'".to_string())),
            other => Err((offset, format!("unexpected {}", describe(&other)))),
        }
    }
}

fn describe(token: &Token) -> String {
    match token {
        Token::Ident(name) => format!("name {name:?}"),
        Token::Str(value) => format!("string {value:?}"),
        Token::Int(value) => format!("number {value}"),
        Token::BadInt(text) => format!("number {text}"),
        Token::Float(value) => format!("number {value}"),
        Token::Punct(punct) => format!("{punct:?}"),
        Token::End => "end of expression".to_string(),
    }
}

/// Parses an expression's syntax without judging its operators or functions.
pub fn parse_syntax(text: &str) -> Result<Expr, ParseError> {
    let fail = |(position, reason): (usize, String)| ParseError { source_text: text.to_string(), position, reason };
    let tokens = Lexer::tokens(text).map_err(fail)?;
    let mut parser = Parser { tokens, next: 0 };
    if *parser.peek() == Token::End {
        return Err(fail((0, "expected operand, found 'EOF'".to_string())));
    }
    let expr = parser.binary_level(0).map_err(fail)?;
    if *parser.peek() != Token::End {
        return Err(fail((parser.offset(), format!("unexpected {} after the expression", describe(parser.peek())))));
    }
    Ok(expr)
}

/// Parses an expression and checks that it only uses operators and functions Mixer knows.
pub fn parse(text: &str) -> Result<Expr, ParseError> {
    let expr = parse_syntax(text)?;
    let mut unknown = None;
    expr.visit(&mut |node| {
        if unknown.is_some() {
            return;
        }
        let name = match node {
            Expr::Call { function, .. } if !KNOWN_FUNCTIONS.contains(&function.as_str()) => Some(function.clone()),
            Expr::Unary(op, _) if op.function().is_none_or(|name| name != "ADD") => Some(op.name().to_string()),
            Expr::Binary(op, ..) if op.function().is_none() => Some(op.name().to_string()),
            _ => None,
        };
        unknown = name;
    });
    match unknown {
        Some(function) => Err(ParseError {
            source_text: text.to_string(),
            position: 0,
            reason: format!("unknown function: {function}"),
        }),
        None => Ok(expr),
    }
}

impl UnaryOp {
    /// The name 1.4 gave the operator (it has no CEXL function, except unary `+`).
    pub fn name(self) -> &'static str {
        match self {
            UnaryOp::Not => "NOT",
            UnaryOp::Negate => "SUB",
            UnaryOp::Plus => "ADD",
            UnaryOp::Complement => "XOR",
            UnaryOp::Address => "AND",
        }
    }

    /// The CEXL function the operator calls with one argument, if any.
    pub fn function(self) -> Option<&'static str> {
        (self == UnaryOp::Plus).then_some("ADD")
    }
}

impl BinaryOp {
    /// The name 1.4 gave the operator in expressions and error messages (`EQ`, `OR`, `QUO`, …);
    /// shifts and `&^` had none.
    pub fn name(self) -> &'static str {
        match self {
            BinaryOp::Default => "OR",
            BinaryOp::Or => "LOR",
            BinaryOp::And => "LAND",
            BinaryOp::Eq => "EQ",
            BinaryOp::NotEq => "NEQ",
            BinaryOp::Less => "LT",
            BinaryOp::LessEq => "LEQ",
            BinaryOp::Greater => "GT",
            BinaryOp::GreaterEq => "GEQ",
            BinaryOp::Add => "ADD",
            BinaryOp::Sub => "SUB",
            BinaryOp::Mul => "MUL",
            BinaryOp::Quo => "QUO",
            BinaryOp::Rem => "REM",
            BinaryOp::BitAnd => "AND",
            BinaryOp::BitXor => "XOR",
            BinaryOp::ShiftLeft | BinaryOp::ShiftRight | BinaryOp::BitAndNot => "",
        }
    }

    /// The name when CEXL gives the operator a meaning.
    pub fn function(self) -> Option<&'static str> {
        match self {
            BinaryOp::Sub
            | BinaryOp::Mul
            | BinaryOp::Quo
            | BinaryOp::Rem
            | BinaryOp::BitAnd
            | BinaryOp::BitXor
            | BinaryOp::ShiftLeft
            | BinaryOp::ShiftRight
            | BinaryOp::BitAndNot => None,
            other => Some(other.name()),
        }
    }
}

/// Go's integer literal forms (hex, octal, binary, with `_`), which 1.4 then parsed as base 10.
fn is_go_int_literal(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    let digits = lower.strip_prefix("0x").or_else(|| lower.strip_prefix("0b")).or_else(|| lower.strip_prefix("0o"));
    match digits {
        Some(rest) => !rest.is_empty() && rest.chars().all(|c| c.is_ascii_hexdigit() || c == '_'),
        None => text.chars().all(|c| c.is_ascii_digit() || c == '_'),
    }
}

/// Go's `strconv.Quote` for the printable form of a string constant.
fn go_quote(value: &str, out: &mut fmt::Formatter<'_>) -> fmt::Result {
    out.write_str("\"")?;
    for c in value.chars() {
        match c {
            '"' => out.write_str("\\\"")?,
            '\\' => out.write_str("\\\\")?,
            '\n' => out.write_str("\\n")?,
            '\t' => out.write_str("\\t")?,
            '\r' => out.write_str("\\r")?,
            c if c.is_control() => write!(out, "\\x{:02x}", u32::from(c))?,
            c => write!(out, "{c}")?,
        }
    }
    out.write_str("\"")
}

/// Go's `%v` of a float constant as its source would have spelled it (`1.0`, `3.14`).
fn go_float(value: f64) -> String {
    let text = value.to_string();
    if text.contains(['.', 'e', 'E']) || !value.is_finite() {
        text
    } else {
        format!("{text}.0")
    }
}

/// The printable form 1.4's messages use: constants as written, attributes as `$name`, operators
/// as their function names (`EQ($a, 2)`), methods as `receiver:name(args)`.
impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn list(f: &mut fmt::Formatter<'_>, args: &[&Expr]) -> fmt::Result {
            for (position, arg) in args.iter().enumerate() {
                if position > 0 {
                    f.write_str(", ")?;
                }
                write!(f, "{arg}")?;
            }
            Ok(())
        }
        match self {
            Expr::Attribute(name) => write!(f, "${name}"),
            Expr::Str(value) => go_quote(value, f),
            Expr::Int(value) => write!(f, "{value}"),
            Expr::BadInt(text) => f.write_str(text),
            Expr::Float(value) => f.write_str(&go_float(*value)),
            Expr::Bool(value) => write!(f, "{value}"),
            Expr::Index(target, key) => {
                f.write_str("INDEX(")?;
                list(f, &[target, key])?;
                f.write_str(")")
            }
            Expr::Unary(op, operand) => {
                write!(f, "{}(", op.name())?;
                list(f, &[operand])?;
                f.write_str(")")
            }
            Expr::Binary(op, left, right) => {
                write!(f, "{}(", op.name())?;
                list(f, &[left, right])?;
                f.write_str(")")
            }
            Expr::Call { function, receiver, args } => {
                if let Some(receiver) = receiver {
                    write!(f, "{receiver}:")?;
                }
                write!(f, "{function}(")?;
                list(f, &args.iter().collect::<Vec<_>>())?;
                f.write_str(")")
            }
        }
    }
}

impl Expr {
    /// Calls `visit` on this node and every node below it.
    pub fn visit(&self, visit: &mut impl FnMut(&Expr)) {
        visit(self);
        match self {
            Expr::Index(target, key) => {
                target.visit(visit);
                key.visit(visit);
            }
            Expr::Unary(_, operand) => operand.visit(visit),
            Expr::Binary(_, left, right) => {
                left.visit(visit);
                right.visit(visit);
            }
            Expr::Call { receiver, args, .. } => {
                if let Some(receiver) = receiver {
                    receiver.visit(visit);
                }
                for arg in args {
                    arg.visit(visit);
                }
            }
            Expr::Attribute(_) | Expr::Str(_) | Expr::Int(_) | Expr::BadInt(_) | Expr::Float(_) | Expr::Bool(_) => {}
        }
    }

    /// The attribute names the expression reads, in first-use order.
    pub fn attributes(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        self.visit(&mut |node| {
            if let Expr::Attribute(name) = node {
                if !names.contains(name) {
                    names.push(name.clone());
                }
            }
        });
        names
    }
}

impl fmt::Display for BinaryOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            BinaryOp::Default => "|",
            BinaryOp::Or => "||",
            BinaryOp::And => "&&",
            BinaryOp::Eq => "==",
            BinaryOp::NotEq => "!=",
            BinaryOp::Less => "<",
            BinaryOp::LessEq => "<=",
            BinaryOp::Greater => ">",
            BinaryOp::GreaterEq => ">=",
            BinaryOp::Add => "+",
            BinaryOp::Sub => "-",
            BinaryOp::Mul => "*",
            BinaryOp::Quo => "/",
            BinaryOp::Rem => "%",
            BinaryOp::ShiftLeft => "<<",
            BinaryOp::ShiftRight => ">>",
            BinaryOp::BitAnd => "&",
            BinaryOp::BitAndNot => "&^",
            BinaryOp::BitXor => "^",
        };
        f.write_str(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(name: &str) -> Box<Expr> {
        Box::new(Expr::Attribute(name.to_string()))
    }

    #[test]
    fn parses_the_default_telemetry_rule() {
        let text = r#"(context.protocol == "http" || context.protocol == "grpc") && (match((request.useragent | "-"), "kube-probe*") == false) && (match((request.useragent | "-"), "Prometheus*") == false)"#;
        let expr = parse(text).expect("parse");
        assert_eq!(expr.attributes(), vec!["context.protocol", "request.useragent"]);
    }

    #[test]
    fn precedence_follows_go() {
        let expr = parse_syntax(r#"a | b == "x" && !c"#).expect("parse");
        let expected = Expr::Binary(
            BinaryOp::And,
            Box::new(Expr::Binary(
                BinaryOp::Eq,
                Box::new(Expr::Binary(BinaryOp::Default, attr("a"), attr("b"))),
                Box::new(Expr::Str("x".into())),
            )),
            Box::new(Expr::Unary(UnaryOp::Not, attr("c"))),
        );
        assert_eq!(expr, expected);
    }

    #[test]
    fn index_receiver_calls_and_literals() {
        let expr = parse(r#"request.headers["x-user"].startsWith(`jo`) && destination.port == 9080 && 1.5 > 0"#)
            .expect("parse");
        let Expr::Binary(BinaryOp::And, left, _) = expr else { panic!("not an and") };
        let Expr::Binary(BinaryOp::And, call, _) = *left else { panic!("not an and") };
        assert_eq!(
            *call,
            Expr::Call {
                function: "startsWith".into(),
                receiver: Some(Box::new(Expr::Index(attr("request.headers"), Box::new(Expr::Str("x-user".into()))))),
                args: vec![Expr::Str("jo".into())],
            }
        );
        assert_eq!(
            parse("emptyStringMap()").expect("parse"),
            Expr::Call { function: "emptyStringMap".into(), receiver: None, args: vec![] }
        );
        assert_eq!(parse(r#""a\"b""#).expect("parse"), Expr::Str("a\"b".into()));
    }

    #[test]
    fn rejects_bad_expressions_with_a_position() {
        for (text, fragment) in [
            ("", "expected operand"),
            ("a ==", "expected operand, found 'EOF'"),
            ("a b", "after the expression"),
            (r#"request.headers["x""#, "expected \"]\""),
            (r#""open"#, "unterminated string"),
            ("nosuchfn(a)", "unknown function: nosuchfn"),
            ("a = b", "expected '==', found '='"),
            ("@23", "illegal character U+0040 '@'"),
            ("a / b", "unknown function: QUO"),
            ("!a", "unknown function: NOT"),
            ("'cd'", "illegal rune literal"),
        ] {
            let error = parse(text).expect_err(text);
            assert!(error.reason.contains(fragment), "{text:?}: {error}");
        }
        assert_eq!(parse("a ==").expect_err("incomplete").position, 4);
    }
}
