//! The shape of one case of the expression-language table: an expression, the attribute types it
//! is checked against, the bag it is evaluated on, and what must come out.

/// Which attribute manifest a case is checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Conf {
    /// The made-up set: `ai bi`, `ab bb b1 b2`, `as bs`, `ad bd`, `ar br sm`, `adur bdur`,
    /// `at bt t1 t2`, `aip bip`, `adns bdns`, `amail bmail`, `auri buri`.
    Default,
    /// The set of the original expression tests: `a x y request.size request.size1`, …
    Eval,
    /// Istio 0.6's vocabulary (`request.headers`, `source.uid`, …).
    Istio06,
}

/// A value put into the bag, or expected out of an evaluation.
#[derive(Debug, Clone, Copy)]
pub(crate) enum V {
    S(&'static str),
    I(i64),
    D(f64),
    B(bool),
    /// An RFC 3339 instant, e.g. `2015-01-02T15:04:35Z`.
    T(&'static str),
    /// A duration in nanoseconds.
    Dur(i64),
    /// Raw bytes (an IP address as 4 or 16 bytes).
    Bytes(&'static [u8]),
    M(&'static [(&'static str, &'static str)]),
}

/// What a case expects.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Want {
    /// Compiles to this type and evaluates to this value.
    Value(&'static str, V),
    /// Compiles to this type, then evaluation fails with an error starting with this text.
    EvalErr(&'static str),
    /// Type checking or compiling fails with exactly this message.
    CompileErr(&'static str),
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Case {
    pub(crate) expr: &'static str,
    pub(crate) conf: Conf,
    pub(crate) input: &'static [(&'static str, V)],
    pub(crate) want: Want,
    /// The attributes evaluation must have looked at, sorted: `-name` absent, `map[key]`.
    /// `None` when the case does not say.
    pub(crate) referenced: Option<&'static [&'static str]>,
}
