//! diamond-types.

use chorus_trace::Patch;
use diamond_types::LocalVersion;
use diamond_types::list::encoding::ENCODE_FULL;
use diamond_types::list::operation::{OpKind, Operation};
use diamond_types::list::{Branch, ListCRDT, OpLog};

use super::{ConcInput, Engine, HistoryEngine, SeqInput, StepError};

/// diamond-types' list CRDT (char positions).
#[derive(Debug)]
pub struct DiamondTypes;

fn apply(doc: &mut ListCRDT, agent: u32, patches: &[Patch]) {
    for patch in patches {
        if patch.del > 0 {
            doc.delete_without_content(agent, patch.pos..patch.pos + patch.del);
        }
        if !patch.ins.is_empty() {
            doc.insert(agent, patch.pos, &patch.ins);
        }
    }
}

impl Engine for DiamondTypes {
    const NAME: &'static str = "diamond-types";
    const CONCURRENT_NOTE: Option<&'static str> = Some(
        "diamond-types replays concurrent traces the way it is built to: every op goes into one \
         op log with its parents named explicitly, then the final state is checked out once",
    );
    type Doc = ListCRDT;

    fn replay_sequential(input: &SeqInput<'_>) -> anyhow::Result<ListCRDT> {
        let SeqInput { start, txns, .. } = *input;
        let mut doc = ListCRDT::new();
        let agent = doc.get_or_create_agent_id("agent0");
        if !start.is_empty() {
            doc.insert(agent, 0, start);
        }
        for txn in txns {
            apply(&mut doc, agent, &txn.patches);
        }
        Ok(doc)
    }

    fn replay_concurrent(input: &ConcInput<'_>) -> anyhow::Result<ListCRDT> {
        let ConcInput {
            num_agents,
            txns,
            plan: _,
        } = *input;
        let mut oplog = OpLog::new();
        let agents: Vec<_> = (0..num_agents)
            .map(|a| oplog.get_or_create_agent_id(&format!("agent{a}")))
            .collect();
        // The version after each transaction.
        let mut after: Vec<LocalVersion> = Vec::with_capacity(txns.len());
        for txn in txns {
            let agent = agents[txn.agent];
            // The trace's parents name a frontier (no parent is an ancestor of
            // another), so their versions' union is their concatenation. (This is also
            // much faster than `OpLog::version_union`, which in diamond-types 1.0.0 is
            // slow here and returns redundant entries.)
            let mut version: LocalVersion = txn
                .parents
                .iter()
                .flat_map(|&p| after[p].iter().copied())
                .collect();
            version.sort_unstable();
            version.dedup();
            for patch in &txn.patches {
                if patch.del > 0 {
                    let time =
                        oplog.add_delete_at(agent, &version, patch.pos..patch.pos + patch.del);
                    version = std::iter::once(time).collect();
                }
                if !patch.ins.is_empty() {
                    let time = oplog.add_insert_at(agent, &version, patch.pos, &patch.ins);
                    version = std::iter::once(time).collect();
                }
            }
            after.push(version);
        }
        let branch = oplog.checkout_tip();
        Ok(ListCRDT { branch, oplog })
    }

    fn text(doc: &mut ListCRDT) -> anyhow::Result<String> {
        Ok(doc.branch.content().to_string())
    }

    fn encode(doc: &mut ListCRDT) -> anyhow::Result<Vec<u8>> {
        Ok(doc.oplog.encode(ENCODE_FULL))
    }

    fn decode_text(bytes: &[u8]) -> anyhow::Result<String> {
        let doc = ListCRDT::load_from(bytes)
            .map_err(|e| anyhow::anyhow!("diamond-types: load: {e:?}"))?;
        Ok(doc.branch.content().to_string())
    }
}

/// diamond-types keeps history apart from state: one op log, any number of branches
/// checked out from it. So a fork is a branch checked out at the old version whose edits
/// go into the same op log (as another agent), and merging it back is merging the op
/// log's new tip into the document's branch.
impl HistoryEngine for DiamondTypes {
    const NAME: &'static str = "diamond-types";
    type Doc = ListCRDT;
    type Version = LocalVersion;
    type Diff = Vec<Operation>;
    type Fork = Branch;

    fn history_doc(start: &str) -> anyhow::Result<ListCRDT> {
        Self::replay_sequential(&SeqInput {
            start,
            txns: &[],
            utf16: Vec::new(),
        })
    }

    fn apply_txn(
        doc: &mut ListCRDT,
        patches: &[Patch],
        _: &[(usize, usize)],
    ) -> anyhow::Result<()> {
        let agent = doc.get_or_create_agent_id("agent0");
        apply(doc, agent, patches);
        Ok(())
    }

    fn version(doc: &mut ListCRDT) -> LocalVersion {
        doc.oplog.local_version()
    }

    fn current_text(doc: &mut ListCRDT) -> anyhow::Result<String> {
        Ok(doc.branch.content().to_string())
    }

    fn text_at(doc: &mut ListCRDT, at: &LocalVersion) -> Result<String, StepError> {
        Ok(doc.oplog.checkout(at).content().to_string())
    }

    fn diff(
        doc: &mut ListCRDT,
        from: &LocalVersion,
        to: &LocalVersion,
    ) -> Result<Vec<Operation>, StepError> {
        // The transformed operations: applied in order to the text at `from`, they give
        // the text at `to` (`None`: a delete that had already happened).
        Ok(doc
            .oplog
            .iter_xf_operations_from(from, to)
            .filter_map(|(_, op)| op)
            .collect())
    }

    fn apply_diff(diff: &Vec<Operation>, text: &str) -> anyhow::Result<String> {
        let mut chars: Vec<char> = text.chars().collect();
        for op in diff {
            let (start, end) = (op.start(), op.end());
            match op.kind {
                OpKind::Ins => {
                    let content = op
                        .content_as_str()
                        .ok_or_else(|| anyhow::anyhow!("diamond-types: insert without content"))?;
                    anyhow::ensure!(start <= chars.len(), "diamond-types: insert past the end");
                    if op.loc.fwd {
                        chars.splice(start..start, content.chars());
                    } else {
                        chars.splice(start..start, content.chars().rev());
                    }
                }
                OpKind::Del => {
                    anyhow::ensure!(end <= chars.len(), "diamond-types: delete past the end");
                    chars.drain(start..end);
                }
            }
        }
        Ok(chars.into_iter().collect())
    }

    fn duplicate(doc: &mut ListCRDT) -> anyhow::Result<ListCRDT> {
        Ok(doc.clone())
    }

    fn fork_edit_merge(
        _doc: &mut ListCRDT,
        target: &mut ListCRDT,
        at: &LocalVersion,
        edits: &[Patch],
        _: &[(usize, usize)],
    ) -> Result<Branch, StepError> {
        // The fork is checked out from the target's op log, a copy of the document's,
        // so its edits land where they are merged from.
        let mut fork = target.oplog.checkout(at);
        let agent = target.oplog.get_or_create_agent_id("fork");
        for edit in edits {
            if edit.del > 0 {
                fork.delete_without_content(
                    &mut target.oplog,
                    agent,
                    edit.pos..edit.pos + edit.del,
                );
            }
            if !edit.ins.is_empty() {
                fork.insert(&mut target.oplog, agent, edit.pos, &edit.ins);
            }
        }
        let tip = target.oplog.local_version();
        target.branch.merge(&target.oplog, &tip);
        Ok(fork)
    }

    fn fork_text(fork: &mut Branch) -> anyhow::Result<String> {
        Ok(fork.content().to_string())
    }

    fn converge(fork: &mut Branch, target: &mut ListCRDT) -> anyhow::Result<String> {
        let tip = target.oplog.local_version();
        fork.merge(&target.oplog, &tip);
        Ok(fork.content().to_string())
    }
}
