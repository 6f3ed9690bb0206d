//! The replay plan for concurrent traces, shared by every engine.
//!
//! A concurrent trace is replayed with one replica per agent. Before transaction `t`
//! runs on its agent's replica, that replica must hold exactly the merge of `t`'s
//! parents: so it first applies the updates of every ancestor of `t` it has not seen
//! yet, oldest first. Computing that list once, here, lets every engine in the bench
//! follow the same plan.

use anyhow::{bail, ensure};

use crate::ConcTxn;

/// Which updates each agent's replica applies before each transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// The number of replicas (agents).
    pub num_agents: usize,
    /// `before[t]`: the transactions, ascending (so parents come before children),
    /// whose updates replica `txns[t].agent` must apply before running transaction `t`.
    pub before: Vec<Vec<usize>>,
}

impl Schedule {
    /// The total number of update applications the plan asks for.
    pub fn num_merges(&self) -> usize {
        self.before.iter().map(Vec::len).sum()
    }
}

/// Plans the per-agent replay of a concurrent trace.
///
/// Fails if a transaction names a parent that is not an earlier transaction, an agent
/// out of range, or if an agent's transaction does not descend from that agent's
/// previous one (its replica would then hold edits the transaction has not seen, and
/// one replica per agent could not reproduce the trace).
pub fn schedule(num_agents: usize, txns: &[ConcTxn]) -> anyhow::Result<Schedule> {
    let n = txns.len();
    ensure!(
        num_agents
            .checked_mul(n)
            .is_some_and(|cells| cells <= 1 << 28),
        "trace too large to plan: {num_agents} agents × {n} transactions"
    );
    // applied[a * n + i]: replica `a` holds transaction `i`.
    let mut applied = vec![false; num_agents * n];
    // seen[t * num_agents + b]: how many of agent b's transactions are in t's history
    // (t included). With every agent's transactions forming a chain, a history is
    // exactly these per-agent prefixes.
    let mut seen = vec![0u32; num_agents * n];
    // own[a]: how many transactions agent a has made so far.
    let mut own = vec![0u32; num_agents];
    let mut before = Vec::with_capacity(n);
    let mut stack = Vec::new();

    for (t, txn) in txns.iter().enumerate() {
        let a = txn.agent;
        if a >= num_agents {
            bail!("transaction {t}: agent {a} is out of range (the trace has {num_agents} agents)");
        }
        for &p in &txn.parents {
            if p >= t {
                bail!("transaction {t}: parent {p} is not an earlier transaction");
            }
        }

        // The history of t, as per-agent counts.
        let (done, rest) = seen.split_at_mut(t * num_agents);
        let row = &mut rest[..num_agents];
        for &p in &txn.parents {
            let parent = &done[p * num_agents..(p + 1) * num_agents];
            for (r, &c) in row.iter_mut().zip(parent) {
                *r = (*r).max(c);
            }
        }
        if row[a] != own[a] {
            bail!(
                "transaction {t}: agent {a} has made {} transactions, but this one descends from only {} \
                 of them; agents' transactions must form a chain to replay with one replica per agent",
                own[a],
                row[a]
            );
        }
        own[a] += 1;
        row[a] = own[a];

        // Ancestors of t that replica a lacks: depth-first from the parents, stopping at
        // transactions it already holds (their ancestors are held too).
        let held = &mut applied[a * n..(a + 1) * n];
        let mut missing = Vec::new();
        stack.extend(txn.parents.iter().copied());
        while let Some(i) = stack.pop() {
            if held[i] {
                continue;
            }
            held[i] = true;
            missing.push(i);
            stack.extend(txns[i].parents.iter().copied());
        }
        missing.sort_unstable();
        held[t] = true;
        before.push(missing);
    }
    Ok(Schedule { num_agents, before })
}
