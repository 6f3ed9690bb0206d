//! Applying updates: decode, plan, apply — all or nothing.
//!
//! An update's runs may come in any order, repeat what is known, or depend on ops
//! not yet here. [`Doc::plan`] decides, without touching the document, which runs
//! apply (in a causal order, each op given a virtual LV so references between planned
//! ops resolve without search), which wait in the pending buffer, and whether
//! anything is invalid — in which case the update is refused and nothing changes.
//! Only then are the planned runs applied, each through the integration of
//! `integrate.rs`. A full state into an empty document takes the fast path
//! [`Doc::load_in_order`]: applied while decoded, no plan.

use std::collections::HashMap;
use std::sync::Arc;

use crate::branch::Body;
use crate::changes::ChangeMeta;
use crate::doc::{ApplyReport, Doc};
use crate::encoding::{self, ContentRef, OpRef, RunRef, WireOp, WireRun};
use crate::ids::ReplicaIndex;
use crate::oplog::{Atom, Op};
use crate::tree::{Lv, NONE, Run};
use crate::types::FieldKey;
use crate::{DecodeError, OpId, ReplicaId};

impl Doc {
    /// Applies an update to this empty document run by run as it is decoded, with
    /// no planning: the fast way to load a full state, whose runs are in causal
    /// order. `Ok(false)` when a run cannot apply in order (the caller starts over
    /// with a fresh document and the general path); on `Err` too the document must
    /// be thrown away.
    fn load_in_order(&mut self, bytes: &[u8]) -> Result<bool, DecodeError> {
        self.ensure_index();
        let empty = Plan::default();
        let sizes = std::cell::Cell::new((0, 0));
        let mut changes = Vec::new();
        let ordered = encoding::decode_each(
            bytes,
            &mut changes,
            |runs, text| sizes.set((runs, text)),
            |run| {
                if self.log.fields.is_empty() {
                    // Room for everything, so nothing is moved as it grows.
                    let (runs, text) = sizes.get();
                    self.log.entries.reserve(runs);
                    self.log.content.reserve(text);
                    // Every inserted char takes an LV; deletes take more.
                    self.branch.index.reserve(text + text / 2);
                    let f = self.field_of_key(run.field);
                    if let Body::Seq(t) = &mut self.branch.bodies[f as usize] {
                        t.reserve(runs);
                    }
                }
                if run.seq != self.next_seq_of(&empty, run.replica) {
                    return Ok(false);
                }
                let code = self.find_key(run.field).unwrap_or(u32::MAX);
                match self.ready(&empty, run, 0, code) {
                    Readiness::Ready => {}
                    Readiness::Waiting => return Ok(false),
                    Readiness::Invalid(why) => return Err(DecodeError::InvalidReference(why)),
                }
                let bytes = match run.op {
                    OpRef::Insert { content, .. } => content.text_len(),
                    _ => 0,
                };
                if !self.ensure_capacity(run.len as usize, bytes) {
                    return Err(DecodeError::TooLarge);
                }
                self.apply_run(run);
                Ok(true)
            },
        )?;
        self.log.refresh_version(self.me);
        if ordered {
            self.add_changes(changes);
        }
        Ok(ordered)
    }

    /// Keeps the change records an applied update carried.
    fn add_changes(&mut self, changes: Vec<ChangeMeta>) {
        for c in changes {
            self.log.changes.insert(c);
        }
    }

    pub(crate) fn apply_update_inner(&mut self, update: &[u8]) -> Result<ApplyReport, DecodeError> {
        if self.log.next_lv() == 0 && self.pending.is_empty() && self.log.fields.is_empty() {
            let rules = self.rules.clone();
            let observers = std::mem::take(&mut self.observers);
            let recorder = self.recorder.take();
            // An empty document (loading a full state): apply while decoding, and
            // start over empty if that does not work out.
            let limit = self.pending_limit;
            self.recorder = recorder;
            let loaded = self.load_in_order(update);
            if let Ok(true) = loaded {
                self.observers = observers;
                return Ok(ApplyReport {
                    applied: self.version().total_ops(),
                    ..ApplyReport::default()
                });
            }
            let recorder = self.recorder.take();
            *self = Doc::new(self.replica);
            self.pending_limit = limit;
            self.rules = rules;
            self.observers = observers;
            self.recorder = recorder;
            if self.recorder.is_some() {
                self.ensure_index();
            }
            loaded?;
        }
        let (runs, mut changes) = encoding::decode_runs(update)?;
        // Only the records of changes whose ops this update brings (ops of a replica
        // arrive in seq order, so it brings some exactly when the version ends before
        // the record does): a relay checks who brings a replica's new ops, so nobody
        // else can attach a record to them.
        changes.retain(|c| self.log.version.get(&c.replica) < c.end());
        let report = self.apply_runs(runs)?;
        self.add_changes(changes);
        Ok(report)
    }

    /// The code of field `name` during planning: its index if it exists here, else a
    /// new index past the existing fields.
    fn field_code(&self, plan: &mut Plan, key: &Arc<FieldKey>) -> u32 {
        if let Some(f) = self.find_key(key) {
            return f;
        }
        let base = self.log.fields.len() as u32;
        if let Some(&code) = plan.new_fields.get(key) {
            return code;
        }
        let code = base + plan.new_fields.len() as u32;
        plan.new_fields.insert(key.clone(), code);
        code
    }

    /// The LV of op `id` and how many ops of its replica's span follow from it, if it
    /// is applied here.
    #[inline]
    fn applied_span(&self, id: OpId) -> Option<(Lv, u64)> {
        let a = self.log.find(&id.replica)?;
        let spans = &self.log.agents[a as usize].spans;
        let i = spans.partition_point(|s| s.seq + u64::from(s.len) <= id.seq);
        let s = spans.get(i).filter(|s| s.seq <= id.seq)?;
        Some((
            s.lv + (id.seq - s.seq) as u32,
            s.seq + u64::from(s.len) - id.seq,
        ))
    }

    /// How many planned ops from `id` on (at most `max`) have `kind` in
    /// [`Plan::kinds`]; `None` if `id` is not planned.
    fn planned_run(plan: &Plan, id: OpId, kind: u32, max: u64) -> Option<u64> {
        let (vlv, span_left) = plan.lookup(id)?;
        let mut n = 0;
        while n < span_left.min(max) && plan.kinds[(vlv + n) as usize] == kind {
            n += 1;
        }
        Some(n)
    }

    /// How many ops from applied op `lv` on (at most `max`, within `span_left`) are
    /// in one log entry of field `code` that `is_kind` accepts.
    fn entry_run(
        &self,
        lv: Lv,
        span_left: u64,
        code: u32,
        max: u64,
        is_kind: fn(&Op) -> bool,
    ) -> u64 {
        let e = &self.log.entries[self.log.entry_index(lv)];
        if !is_kind(&e.op) || e.field != code {
            return 0;
        }
        // Within the entry and the replica's span, ids stay consecutive.
        u64::from(e.end() - lv).min(span_left).min(max)
    }

    /// How many ops from `id` on (at most `max`) are known inserts of field `code` in
    /// one stretch: `Some(0)` if `id` is known but is not one, `None` if unknown.
    fn known_inserts(&self, plan: &Plan, id: OpId, code: u32, max: u64) -> Option<u64> {
        let Some((lv, span_left)) = self.applied_span(id) else {
            return Self::planned_run(plan, id, code, max);
        };
        if self.branch.index.is_on() && self.log.fields.len() == 1 {
            // One field: the index tells inserts (which have a leaf) from deletes
            // without searching the log.
            if code != 0 {
                return Some(0);
            }
            let limit = span_left.min(max);
            let mut n = 0;
            while n < limit && self.branch.index.get(lv + n as u32).is_some() {
                n += 1;
            }
            return Some(n);
        }
        Some(self.entry_run(lv, span_left, code, max, |op| {
            matches!(op, Op::Insert { .. })
        }))
    }

    /// How many ops from `id` on (at most `max`) are known deletes of field `code` in
    /// one stretch of ids: `Some(0)` if `id` is known but is not one, `None` if unknown.
    fn known_deletes(&self, plan: &Plan, id: OpId, code: u32, max: u64) -> Option<u64> {
        match self.applied_span(id) {
            Some((lv, span_left)) => Some(self.entry_run(lv, span_left, code, max, |op| {
                matches!(op, Op::Delete { .. })
            })),
            None => Self::planned_run(plan, id, code | DELETE_BIT, max),
        }
    }

    fn next_seq_of(&self, plan: &Plan, replica: ReplicaId) -> u64 {
        // From the replica's spans, not the version vector: the local replica's entry
        // there is only refreshed once per transaction or update.
        plan.next_seq(replica).unwrap_or_else(|| {
            self.log
                .find(&replica)
                .map_or(0, |a| self.log.agents[a as usize].next_seq())
        })
    }

    /// Decides which runs can be applied now, in a causal order, without changing
    /// anything: the earlier-pending runs `old` and the update's `new` (indexed
    /// together, `old` first). Ops already applied or planned are skipped from the
    /// front of a run (`Plan::skip`). `Err` if a run of the update itself is invalid.
    fn plan(&self, old: &[WireRun], new: &[WireRun]) -> Result<Plan, DecodeError> {
        let n_old = old.len();
        let total = n_old + new.len();
        let run_at = |i: usize| if i < n_old { &old[i] } else { &new[i - n_old] };
        let mut plan = Plan {
            state: vec![RunState::Waiting; total],
            skip: vec![0; total],
            order: Vec::with_capacity(total),
            kinds: Vec::with_capacity(new.iter().map(|r| r.len as usize).sum()),
            ..Plan::default()
        };
        // Lamport order is a causal order (when peers are honest), so one pass in it
        // usually plans everything that can be.
        let by_lamport = |ix: &mut Vec<usize>| {
            ix.sort_by_key(|&i| {
                let r = run_at(i);
                (r.lamport, r.replica, r.seq)
            });
        };
        // The update's runs in the update's order (a causal order from an honest
        // encoder; applying in it keeps a decoded state's op order, so it encodes to
        // the same bytes).
        let mut waiting: Vec<usize> = (n_old..total).collect();
        // Earlier-pending runs were not ready before; only ops planned from the
        // update can make them ready, so they are looked at only then.
        let mut with_old = false;
        loop {
            let (still, progress) = self.plan_pass(&mut plan, waiting, n_old, &run_at)?;
            waiting = still;
            if progress && !with_old && n_old > 0 {
                with_old = true;
                waiting.extend(0..n_old);
                by_lamport(&mut waiting);
            } else if !progress || waiting.is_empty() {
                break;
            }
        }
        if !with_old {
            waiting.extend(0..n_old);
        }
        // What waits: one copy of each op.
        waiting.sort_by_key(|&i| {
            let r = run_at(i);
            (r.replica, r.seq + u64::from(plan.skip[i]))
        });
        let mut last: Option<(ReplicaId, u64)> = None;
        for i in waiting {
            let run = run_at(i);
            let start = run.seq + u64::from(plan.skip[i]);
            if let Some((r, end)) = last {
                if r == run.replica && start < end {
                    if run.end_seq() <= end {
                        plan.state[i] = RunState::Done;
                        continue;
                    }
                    plan.skip[i] = (end - run.seq) as u32;
                }
            }
            last = Some((run.replica, run.end_seq()));
            plan.pending_ops += (run.len - plan.skip[i]) as usize;
        }
        Ok(plan)
    }

    /// One pass of planning over `waiting`: returns the runs still waiting and
    /// whether anything was planned.
    fn plan_pass<'r>(
        &self,
        plan: &mut Plan,
        waiting: Vec<usize>,
        n_old: usize,
        run_at: &impl Fn(usize) -> &'r WireRun,
    ) -> Result<(Vec<usize>, bool), DecodeError> {
        let mut progress = false;
        let mut still = Vec::new();
        for i in waiting {
            let run = run_at(i);
            let next = self.next_seq_of(plan, run.replica);
            if run.end_seq() <= next {
                plan.state[i] = RunState::Done;
                continue;
            }
            if run.seq > next {
                still.push(i);
                continue;
            }
            let skip = (next - run.seq) as u32;
            plan.skip[i] = skip;
            let code = self.field_code(plan, &run.field);
            match self.ready(plan, run.as_ref(), skip, code) {
                Readiness::Ready => {
                    plan.add(i, run, skip, code);
                    progress = true;
                }
                Readiness::Waiting => still.push(i),
                Readiness::Invalid(why) => {
                    if i >= n_old {
                        return Err(DecodeError::InvalidReference(why));
                    }
                    // An earlier-pending run that turns out invalid is dropped.
                    plan.state[i] = RunState::Rejected;
                }
            }
        }
        Ok((still, progress))
    }

    /// Whether `run` without its first `skip` ops can be applied once `plan` is.
    fn ready(&self, plan: &Plan, run: RunRef<'_>, skip: u32, code: u32) -> Readiness {
        match run.op {
            OpRef::Insert { left, right, .. } => {
                let left = if skip > 0 {
                    Some(OpId::new(run.replica, run.seq + u64::from(skip) - 1))
                } else {
                    left
                };
                for o in [left, right].into_iter().flatten() {
                    match self.known_inserts(plan, o, code, 1) {
                        None => return Readiness::Waiting,
                        Some(0) => {
                            return Readiness::Invalid("an origin is not a char of the same field");
                        }
                        Some(_) => {}
                    }
                }
                Readiness::Ready
            }
            OpRef::Delete { target, backward } => {
                // The targets of the whole run, then of the ops left after `skip`.
                let (mut lo, mut hi) = if backward {
                    (target.seq - u64::from(run.len - 1), target.seq + 1)
                } else {
                    (target.seq, target.seq + u64::from(run.len))
                };
                if backward {
                    hi -= u64::from(skip);
                } else {
                    lo += u64::from(skip);
                }
                if self.next_seq_of(plan, target.replica) < hi {
                    return Readiness::Waiting;
                }
                // All targets are known; each must be an insert of this field.
                let mut seq = lo;
                while seq < hi {
                    let id = OpId::new(target.replica, seq);
                    match self.known_inserts(plan, id, code, hi - seq) {
                        Some(0) | None => {
                            return Readiness::Invalid(
                                "a delete targets something that is not a char of the same field",
                            );
                        }
                        Some(n) => seq += n,
                    }
                }
                Readiness::Ready
            }
            OpRef::Add { .. } => Readiness::Ready,
            OpRef::Undelete { target } => {
                let lo = target.seq + u64::from(skip);
                let hi = target.seq + u64::from(run.len);
                if self.next_seq_of(plan, target.replica) < hi {
                    return Readiness::Waiting;
                }
                let mut seq = lo;
                while seq < hi {
                    match self.known_deletes(plan, OpId::new(target.replica, seq), code, hi - seq) {
                        Some(n) if n > 0 => seq += n,
                        _ => {
                            return Readiness::Invalid(
                                "an undelete targets something that is not a delete of the same field",
                            );
                        }
                    }
                }
                Readiness::Ready
            }
            OpRef::Set { preds, .. } => {
                // A write waits for the writes it supersedes (which decoding checked
                // are earlier ones when they are its own replica's).
                if preds
                    .iter()
                    .any(|p| self.next_seq_of(plan, p.replica) <= p.seq)
                {
                    Readiness::Waiting
                } else {
                    Readiness::Ready
                }
            }
        }
    }

    fn apply_runs(&mut self, new: Vec<WireRun>) -> Result<ApplyReport, DecodeError> {
        if !self.pending.is_empty() {
            // When none of the update can apply yet, nothing that waits can either:
            // the update only joins the waiting runs, at a cost in its own size (a
            // backlog delivered newest first stays linear).
            let probe = self.plan(&[], &new)?;
            if probe.order.is_empty() {
                return self.add_pending(new, &probe);
            }
        }
        // Planning reads the pending runs without changing them, so a refused update
        // puts them back as they were.
        let old = std::mem::take(&mut self.pending);
        let plan = match self.plan(&old, &new) {
            Ok(plan) if plan.pending_ops > self.pending_limit => {
                let err = DecodeError::PendingOverflow {
                    pending: plan.pending_ops,
                    limit: self.pending_limit,
                };
                self.pending = old;
                return Err(err);
            }
            Ok(plan) => plan,
            Err(e) => {
                self.pending = old;
                return Err(e);
            }
        };
        let n_old = old.len();
        let run_at = |i: usize| if i < n_old { &old[i] } else { &new[i - n_old] };
        let new_ops: usize = plan
            .order
            .iter()
            .map(|&i| (run_at(i).len - plan.skip[i]) as usize)
            .sum();
        let new_bytes: usize = plan
            .order
            .iter()
            .map(|&i| match &run_at(i).op {
                WireOp::Insert { content, .. } => content.text_len(),
                _ => 0,
            })
            .sum();
        if !self.ensure_capacity(new_ops, new_bytes) {
            self.pending = old;
            return Err(DecodeError::TooLarge);
        }
        // From here on nothing fails.
        self.log.content.reserve(new_bytes);
        if !plan.order.is_empty() {
            self.ensure_index();
        }
        self.branch.index.reserve(new_ops);
        self.log.entries.reserve(plan.order.len());
        // Room for the runs the update may add, so leaves are not moved as they grow.
        if let Some(&i) = plan.order.first() {
            let f = self.field_of_key(&run_at(i).field);
            if let Body::Seq(t) = &mut self.branch.bodies[f as usize] {
                t.reserve(plan.order.len());
            }
        }
        for &i in &plan.order {
            let run = run_at(i);
            match plan.skip[i] {
                0 => self.apply_run(run.as_ref()),
                k => {
                    let mut run = run.clone();
                    run.trim_front(k);
                    self.apply_run(run.as_ref());
                }
            }
        }
        self.log.refresh_version(self.me);

        let mut report = ApplyReport {
            applied: new_ops as u64,
            pending: plan.pending_ops as u64,
            ..ApplyReport::default()
        };
        let mut pending = Vec::new();
        for (i, run) in old.into_iter().chain(new).enumerate() {
            let skip = plan.skip[i];
            let fresh = i >= n_old;
            match plan.state[i] {
                RunState::Waiting => {
                    if fresh {
                        report.duplicate += u64::from(skip);
                    }
                    let mut run = run;
                    run.trim_front(skip);
                    pending.push(run);
                }
                RunState::Planned if fresh => report.duplicate += u64::from(skip),
                RunState::Done if fresh => report.duplicate += u64::from(run.len),
                RunState::Rejected => report.rejected += u64::from(run.len - skip),
                _ => {}
            }
        }
        self.pending_keys = pending.iter().map(pending_key).collect();
        self.pending = pending;
        self.pending_ops = plan.pending_ops;
        Ok(report)
    }

    /// Adds the runs of an update of which nothing can apply to the waiting runs,
    /// skipping exact copies of runs already waiting.
    fn add_pending(&mut self, new: Vec<WireRun>, probe: &Plan) -> Result<ApplyReport, DecodeError> {
        let mut report = ApplyReport::default();
        let mut added = Vec::new();
        let mut added_ops = 0usize;
        for (i, run) in new.into_iter().enumerate() {
            let skip = probe.skip[i];
            match probe.state[i] {
                RunState::Waiting => {
                    report.duplicate += u64::from(skip);
                    let mut run = run;
                    run.trim_front(skip);
                    if !self.pending_keys.contains(&pending_key(&run)) {
                        added_ops += run.len as usize;
                        added.push(run);
                    }
                }
                RunState::Done => report.duplicate += u64::from(run.len),
                RunState::Planned | RunState::Rejected => {}
            }
        }
        let total = self.pending_ops + added_ops;
        if total > self.pending_limit {
            return Err(DecodeError::PendingOverflow {
                pending: total,
                limit: self.pending_limit,
            });
        }
        for run in added {
            if self.pending_keys.insert(pending_key(&run)) {
                self.pending.push(run);
            } else {
                added_ops -= run.len as usize;
            }
        }
        self.pending_ops += added_ops;
        report.pending = self.pending_ops as u64;
        Ok(report)
    }

    fn lv_of_id(&self, id: OpId) -> Lv {
        let a = self
            .log
            .find(&id.replica)
            .expect("planned replica is known");
        self.log
            .lv_of(a, id.seq)
            .expect("planned dependency is applied")
    }

    fn apply_run(&mut self, run: RunRef<'_>) {
        let field = self.field_of_key(run.field);
        let agent = self.log.intern(run.replica);
        self.touch(field, run.lamport, run.replica, self.log.next_lv());
        self.record_replica(run.replica);
        match run.op {
            OpRef::Insert {
                left,
                right,
                content,
            } => {
                let origin_left = left.map_or(NONE, |id| self.lv_of_id(id));
                let origin_right = right.map_or(NONE, |id| self.lv_of_id(id));
                let lv = self.log.next_lv();
                let (byte_start, byte_len, utf16) = match content {
                    ContentRef::Text(content) => {
                        let byte_start = self.log.content.len() as u32;
                        crate::grow::reserve_str(&mut self.log.content, content.len());
                        self.log.content.push_str(content);
                        let utf16 = if content.len() == run.len as usize {
                            run.len
                        } else {
                            content.chars().map(|c| c.len_utf16() as u32).sum()
                        };
                        (byte_start, content.len() as u32, utf16)
                    }
                    ContentRef::Values(values) => {
                        let start = self.log.elems.len() as u32;
                        self.log.elems.extend_from_slice(values);
                        (start, run.len, run.len)
                    }
                };
                let r = Run {
                    lv,
                    len: run.len,
                    origin_left,
                    origin_right,
                    byte_start,
                    byte_len,
                    utf16_len: utf16,
                    dels: 0,
                };
                self.log.push(
                    agent,
                    run.seq,
                    run.lamport,
                    field,
                    Op::Insert {
                        origin_left,
                        origin_right,
                        byte_start,
                        byte_len,
                    },
                    run.len,
                );
                self.integrate_insert(field, r, run.replica);
            }
            OpRef::Undelete { target } => {
                let ta = self
                    .log
                    .find(&target.replica)
                    .expect("planned replica is known");
                let mut seq = run.seq;
                let mut lamport = run.lamport;
                for (tlv, n) in self.log.lv_ranges(ta, target.seq, u64::from(run.len)) {
                    self.log
                        .push(agent, seq, lamport, field, Op::Undelete { target: tlv }, n);
                    self.undelete(field, tlv, n);
                    seq += u64::from(n);
                    lamport += u64::from(n);
                }
            }
            OpRef::Add { delta } => self.apply_remote_atom(agent, run, field, Atom::Add(delta)),
            OpRef::Set {
                key,
                value,
                hlc,
                preds,
            } => {
                self.log.hlc = self.log.hlc.max(hlc);
                let preds = preds.iter().map(|&p| self.lv_of_id(p)).collect();
                let atom = Atom::Set {
                    key: key.cloned(),
                    value: value.cloned(),
                    hlc,
                    preds,
                };
                self.apply_remote_atom(agent, run, field, atom);
            }
            OpRef::Delete { target, backward } => {
                let lo = if backward {
                    target.seq - u64::from(run.len - 1)
                } else {
                    target.seq
                };
                let ta = self
                    .log
                    .find(&target.replica)
                    .expect("planned replica is known");
                // One log entry per LV stretch of targets, in the run's own order
                // (mostly there is one stretch).
                let mut ranges = self.log.lv_ranges(ta, lo, u64::from(run.len));
                if backward {
                    ranges.reverse();
                }
                let mut seq = run.seq;
                let mut lamport = run.lamport;
                for (tlv, n) in ranges {
                    let first = if backward { tlv + n - 1 } else { tlv };
                    self.log.push(
                        agent,
                        seq,
                        lamport,
                        field,
                        Op::Delete {
                            target: first,
                            backward: backward && n > 1,
                        },
                        n,
                    );
                    self.delete_range(field, tlv, tlv + n - 1);
                    seq += u64::from(n);
                    lamport += u64::from(n);
                }
            }
        }
    }

    fn apply_remote_atom(&mut self, agent: u32, run: RunRef<'_>, field: u32, atom: Atom) {
        let lv = self.log.next_lv();
        let idx = self.log.atoms.len() as u32;
        crate::grow::reserve_one(&mut self.log.atoms);
        self.log.atoms.push(atom);
        self.log
            .push(agent, run.seq, run.lamport, field, Op::Atom { idx }, 1);
        self.apply_atom(field, lv, idx);
    }
}

pub(crate) fn pending_key(run: &WireRun) -> (ReplicaId, u64, u32) {
    (run.replica, run.seq, run.len)
}

#[derive(Debug)]
enum Readiness {
    Ready,
    Waiting,
    Invalid(&'static str),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RunState {
    Waiting,
    Planned,
    /// Nothing left to apply (all known already, or a duplicate of another run).
    Done,
    /// An earlier-pending run found invalid: dropped.
    Rejected,
}

/// Marks a planned op that is neither an insert nor a delete (in [`Plan::kinds`]).
const KIND_OTHER: u32 = u32::MAX;

/// Marks a planned delete of field `code` as `code | DELETE_BIT` (in [`Plan::kinds`]).
const DELETE_BIT: u32 = 1 << 31;

/// What an update will apply, in order, and what will wait. Planned ops get virtual
/// LVs (their position in the plan), so references to them resolve without search.
#[derive(Default)]
struct Plan {
    /// Indexes of the runs to apply, in a causal order.
    order: Vec<usize>,
    state: Vec<RunState>,
    /// Ops to skip from the front of each run (already applied or planned).
    skip: Vec<u32>,
    /// The replicas with planned ops.
    replica_index: ReplicaIndex,
    /// Per replica (by `replica_index`): spans of (seq, virtual LV, len).
    replicas: Vec<Vec<(u64, u64, u32)>>,
    /// The field code of every planned op (see [`DELETE_BIT`], [`KIND_OTHER`]), by
    /// virtual LV.
    kinds: Vec<u32>,
    /// Fields that planned ops will create, in code order after the existing ones.
    new_fields: HashMap<Arc<FieldKey>, u32>,
    pending_ops: usize,
}

impl Plan {
    pub(crate) fn next_seq(&self, r: ReplicaId) -> Option<u64> {
        let spans = &self.replicas[self.replica_index.get(&r)?];
        spans.last().map(|&(seq, _, len)| seq + u64::from(len))
    }

    pub(crate) fn add(&mut self, i: usize, run: &WireRun, skip: u32, code: u32) {
        let vlv = self.kinds.len() as u64;
        let kind = match run.op {
            WireOp::Insert { .. } => code,
            WireOp::Delete { .. } if code < DELETE_BIT => code | DELETE_BIT,
            _ => KIND_OTHER,
        };
        let (seq, len) = (run.seq + u64::from(skip), run.len - skip);
        self.kinds.resize(self.kinds.len() + len as usize, kind);
        let (slot, new) = self.replica_index.insert(run.replica);
        if new {
            self.replicas.push(Vec::new());
        }
        let spans = &mut self.replicas[slot];
        match spans.last_mut() {
            Some((s, v, n)) if *s + u64::from(*n) == seq && *v + u64::from(*n) == vlv => {
                *n += len;
            }
            _ => spans.push((seq, vlv, len)),
        }
        self.state[i] = RunState::Planned;
        self.order.push(i);
    }

    /// The virtual LV of planned op `id` and how many ops of its span follow from it.
    fn lookup(&self, id: OpId) -> Option<(u64, u64)> {
        let spans = &self.replicas[self.replica_index.get(&id.replica)?];
        let i = spans.partition_point(|&(seq, _, len)| seq + u64::from(len) <= id.seq);
        let &(seq, vlv, len) = spans.get(i)?;
        (seq <= id.seq).then(|| (vlv + (id.seq - seq), seq + u64::from(len) - id.seq))
    }
}
