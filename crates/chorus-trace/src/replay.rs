//! Replaying traces with Chorus.

use anyhow::Context;
use chorus_doc::{Doc, EditError, ReplicaId, Transaction};

use crate::{ConcTxn, FIELD, Patch, SeqTxn, Trace, schedule};

/// Replays any trace with Chorus and returns the final document (for concurrent
/// traces, the merge of every agent's replica).
pub fn replay(trace: &Trace) -> anyhow::Result<Doc> {
    match trace {
        Trace::Sequential { start, txns, .. } => {
            replay_sequential(start, txns).context("sequential replay failed")
        }
        Trace::Concurrent {
            num_agents, txns, ..
        } => replay_concurrent(*num_agents, txns),
    }
}

/// Applies `patches`, in order, to the trace's text field inside `tx`.
fn apply_patches(tx: &mut Transaction<'_>, patches: &[Patch]) -> Result<(), EditError> {
    let mut text = tx.text(FIELD);
    for patch in patches {
        if patch.del > 0 {
            text.delete(patch.pos, patch.del)?;
        }
        if !patch.ins.is_empty() {
            text.insert(patch.pos, &patch.ins)?;
        }
    }
    Ok(())
}

/// Replays a sequential trace on one replica: `start` in a first transaction (if not
/// empty), then one transaction per trace transaction.
pub fn replay_sequential(start: &str, txns: &[SeqTxn]) -> Result<Doc, EditError> {
    let mut doc = Doc::new(ReplicaId::from_u128(1));
    if !start.is_empty() {
        let mut tx = doc.transact();
        tx.text(FIELD).insert(0, start)?;
        tx.commit();
    }
    for txn in txns {
        let mut tx = doc.transact();
        apply_patches(&mut tx, &txn.patches)?;
        tx.commit();
    }
    Ok(doc)
}

/// The result of [`replay_concurrent_replicas`].
#[derive(Debug)]
pub struct ConcurrentReplay {
    /// Every replica merged into one.
    pub merged: Doc,
    /// Each agent's replica as it was after its last transaction (agent `a` is
    /// `ReplicaId::from_u128(a + 1)`).
    pub agents: Vec<Doc>,
}

/// Replays a concurrent trace with one replica per agent and returns their merge.
///
/// See [`replay_concurrent_replicas`].
pub fn replay_concurrent(num_agents: usize, txns: &[ConcTxn]) -> anyhow::Result<Doc> {
    replay_concurrent_replicas(num_agents, txns).map(|r| r.merged)
}

/// Replays a concurrent trace with one replica per agent, exchanging updates.
///
/// Each transaction, once committed, is recorded as an update: the bytes
/// `encode_since` the replica's version before it. Before transaction `t` runs on its
/// agent's replica, the replica applies (in index order) the updates of every ancestor
/// of `t` it lacks ([`schedule`]), so it holds exactly the merge of `t`'s parents.
/// At the end, every replica is merged into agent 0's.
pub fn replay_concurrent_replicas(
    num_agents: usize,
    txns: &[ConcTxn],
) -> anyhow::Result<ConcurrentReplay> {
    let plan = schedule(num_agents, txns)?;
    let mut agents: Vec<Doc> = (0..num_agents)
        .map(|a| Doc::new(ReplicaId::from_u128(a as u128 + 1)))
        .collect();
    let mut updates: Vec<Vec<u8>> = Vec::with_capacity(txns.len());

    for (t, (txn, before)) in txns.iter().zip(&plan.before).enumerate() {
        let doc = &mut agents[txn.agent];
        for &i in before {
            doc.apply_update(&updates[i]).with_context(|| {
                format!(
                    "agent {} could not apply the update of transaction {i}",
                    txn.agent
                )
            })?;
        }
        let version = doc.version().clone();
        let mut tx = doc.transact();
        apply_patches(&mut tx, &txn.patches)
            .with_context(|| format!("transaction {t} (agent {}) does not apply", txn.agent))?;
        tx.commit();
        updates.push(doc.encode_since(&version));
    }
    drop(updates);

    let mut merged = match agents.first() {
        Some(first) => first.clone(),
        None => Doc::new(ReplicaId::from_u128(1)),
    };
    for (a, other) in agents.iter().enumerate().skip(1) {
        merged
            .apply_update(&other.encode_since(merged.version()))
            .with_context(|| format!("could not merge agent {a}'s replica"))?;
    }
    Ok(ConcurrentReplay { merged, agents })
}
