//! One analyzer: its 1.4 name, the collections it reads, and the function that reads a
//! snapshot and reports messages.

use super::messages::Message;
use super::snapshot::{Collection, Snapshot};

/// What an analyzer does: read the snapshot, add messages.
type Run = Box<dyn Fn(&Snapshot, &mut Vec<Message>) + Send + Sync>;

/// One analyzer: its 1.4 name, the collections it reads, and what it does.
pub struct Analyzer {
    pub name: String,
    pub inputs: Vec<Collection>,
    run: Run,
}

impl Analyzer {
    pub(super) fn new(
        name: &str,
        inputs: &[Collection],
        run: impl Fn(&Snapshot, &mut Vec<Message>) + Send + Sync + 'static,
    ) -> Analyzer {
        Analyzer { name: name.to_string(), inputs: inputs.to_vec(), run: Box::new(run) }
    }

    /// Runs the analyzer alone over a snapshot.
    pub fn analyze(&self, snapshot: &Snapshot) -> Vec<Message> {
        let mut messages = Vec::new();
        (self.run)(snapshot, &mut messages);
        messages
    }
}
