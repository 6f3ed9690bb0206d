//! The document: fields, transactions, sync entry points.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use crate::branch::{Body, Branch, apply_atom_to};
use crate::changes::{ChangeMeta, CommitOptions};
use crate::encoding::{self, Content, ContentRef, OpRef, RunRef, WireOp, WireRun};
use crate::events::{Observers, Recorder};
use crate::ids::ReplicaIndex;
use crate::merge::MergeRule;
use crate::oplog::{Atom, Entry, Op, OpLog};
use crate::tree::{Cur, Lv, NONE, Run, Tree, Unit};
use crate::types::FieldKey;
use crate::{
    CheckError, DecodeError, EditError, Kind, MapValue, OpId, ReplicaId, Value, VersionVector,
};

/// The most operations a document may hold (LVs are `u32`, one value is reserved).
const MAX_OPS: u64 = u32::MAX as u64 - 1;
/// The default bound on operations waiting for missing dependencies.
pub const DEFAULT_PENDING_LIMIT: usize = 1 << 20;

/// One replica of a document: a root of named fields, each a typed container.
///
/// Local edits go through a [`Transaction`]; remote edits arrive as updates through
/// [`Doc::apply_update`]. See the crate docs for an example.
#[derive(Clone)]
pub struct Doc {
    replica: ReplicaId,
    /// This replica's index in the log's replica table.
    me: u32,
    pub(crate) log: OpLog,
    /// The text of every text insert, in LV order. Deleted text stays: the log needs it.
    pub(crate) content: String,
    /// The values of every list insert, in LV order (deleted ones too).
    pub(crate) elems: Vec<Value>,
    /// The highest hybrid logical clock stamp seen (register writes).
    pub(crate) hlc: u64,
    /// Merge rules by name: the built-ins and those added by the application.
    pub(crate) rules: HashMap<Arc<str>, Arc<dyn MergeRule>>,
    /// The field states at the current version.
    pub(crate) branch: Branch,
    pub(crate) fields: Vec<Field>,
    /// Field indexes by name (any parent, any kind).
    field_index: HashMap<(u32, u64), Vec<u32>>,
    pending: Vec<WireRun>,
    /// (replica, seq, len) of every waiting run, to skip exact copies cheaply.
    pending_keys: HashSet<(ReplicaId, u64, u32)>,
    pending_ops: usize,
    pending_limit: usize,
    /// The field the last `field_id` call named.
    last_field: u32,
    pub(crate) observers: Observers,
    /// What the current transaction or apply touched, while observed.
    pub(crate) recorder: Option<Box<Recorder>>,
}

/// "No parent": a field of the document root.
pub(crate) const ROOT: u32 = u32::MAX;

#[derive(Clone, Debug)]
pub(crate) struct Field {
    /// The map this field belongs to, or [`ROOT`].
    pub parent: u32,
    pub name: Arc<str>,
    pub kind: Kind,
    /// The field's identity in updates.
    pub key: Arc<FieldKey>,
}

impl Field {
    fn is(&self, parent: u32, name: &str, kind: &Kind) -> bool {
        self.parent == parent && *self.name == *name && self.kind == *kind
    }
}

/// The operations of one committed transaction, all made by this replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The replica that made it (this document's replica).
    pub replica: ReplicaId,
    /// The sequence numbers of its operations.
    pub seqs: Range<u64>,
    /// The Lamport timestamp of its first operation; later ones follow consecutively.
    pub lamport: u64,
}

/// What [`Doc::apply_update`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ApplyReport {
    /// Operations applied by this call (including earlier-pending ones it unblocked).
    pub applied: u64,
    /// Operations in the update that were already applied here (ignored).
    pub duplicate: u64,
    /// Operations now waiting for missing dependencies (from this and earlier updates).
    pub pending: u64,
    /// Earlier-pending operations dropped because, once their dependencies arrived,
    /// they turned out to be invalid.
    pub rejected: u64,
}

/// A group of local edits that becomes one [`Change`] on [`commit`](Self::commit).
///
/// Edits apply to the document at once (reads through [`TextMut::view`] see them);
/// a transaction dropped without `commit` rolls them all back.
pub struct Transaction<'d> {
    pub(crate) doc: &'d mut Doc,
    start_lv: Lv,
    start_seq: u64,
    start_lamport: u64,
    start_content: usize,
    start_elems: usize,
    start_atoms: usize,
    start_hlc: u64,
    fields_before: usize,
}

/// Editing access to one text field inside a transaction.
pub struct TextMut<'t> {
    pub(crate) doc: &'t mut Doc,
    pub(crate) field: u32,
}

/// Read-only access to one text field.
#[derive(Clone, Copy)]
pub struct TextView<'d> {
    pub(crate) doc: &'d Doc,
    pub(crate) branch: &'d Branch,
    pub(crate) field: Option<u32>,
}

impl fmt::Debug for Doc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Doc")
            .field("replica", &self.replica)
            .field("version", &self.log.version)
            .field(
                "fields",
                &self
                    .fields
                    .iter()
                    .map(|f| (&f.name, &f.kind))
                    .collect::<Vec<_>>(),
            )
            .field("pending_ops", &self.pending_ops)
            .finish_non_exhaustive()
    }
}

impl Doc {
    /// An empty document replica named `replica`.
    pub fn new(replica: ReplicaId) -> Self {
        let mut log = OpLog::default();
        let me = log.intern(replica);
        debug_assert_eq!(me, crate::oplog::LOCAL);
        Doc {
            replica,
            me,
            log,
            content: String::new(),
            elems: Vec::new(),
            hlc: 0,
            rules: builtin_rules(),
            branch: Branch::default(),
            fields: Vec::new(),
            field_index: HashMap::new(),
            pending: Vec::new(),
            pending_keys: HashSet::new(),
            pending_ops: 0,
            pending_limit: DEFAULT_PENDING_LIMIT,
            last_field: 0,
            observers: Observers::default(),
            recorder: None,
        }
    }

    /// Decodes a full state (or any update) into a fresh replica named `replica`.
    pub fn decode(bytes: &[u8], replica: ReplicaId) -> Result<Self, DecodeError> {
        let mut doc = Doc::new(replica);
        doc.apply_update(bytes)?;
        Ok(doc)
    }

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
                if self.fields.is_empty() {
                    // Room for everything, so nothing is moved as it grows.
                    let (runs, text) = sizes.get();
                    self.log.entries.reserve(runs);
                    self.content.reserve(text);
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

    /// The change records that describe any of `runs`' operations.
    pub(crate) fn changes_for(&self, runs: &[WireRun]) -> Vec<ChangeMeta> {
        if self.log.changes.is_empty() {
            return Vec::new();
        }
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for run in runs {
            for c in self
                .log
                .changes
                .overlapping(&run.replica, run.seq..run.end_seq())
            {
                if seen.insert((c.replica, c.seq)) {
                    out.push(c.clone());
                }
            }
        }
        out
    }

    /// This replica's id.
    pub fn replica_id(&self) -> ReplicaId {
        self.replica
    }

    /// The operations applied so far (waiting ones excluded).
    pub fn version(&self) -> &VersionVector {
        &self.log.version
    }

    /// The highest Lamport timestamp applied so far (0 for an empty document).
    pub fn max_lamport(&self) -> u64 {
        self.log.max_lamport
    }

    /// The root fields (name and kind) in the order they became known here, including
    /// every kind of a name used with several (see [`Doc::root_kind`]).
    pub fn fields(&self) -> impl Iterator<Item = (&str, &Kind)> + '_ {
        self.fields
            .iter()
            .filter(|f| f.parent == ROOT)
            .map(|f| (&*f.name, &f.kind))
    }

    /// Starts a transaction. Commit it to keep its edits.
    pub fn transact(&mut self) -> Transaction<'_> {
        self.start_recording();
        Transaction {
            start_lv: self.log.next_lv(),
            start_seq: self.log.agents[self.me as usize].next_seq(),
            start_lamport: self.log.max_lamport + 1,
            start_content: self.content.len(),
            start_elems: self.elems.len(),
            start_atoms: self.log.atoms.len(),
            start_hlc: self.hlc,
            fields_before: self.fields.len(),
            doc: self,
        }
    }

    /// Reads the text field `name` (empty if it does not exist).
    pub fn text(&self, name: &str) -> TextView<'_> {
        TextView {
            doc: self,
            branch: &self.branch,
            field: self.find_field(ROOT, name, &Kind::Text),
        }
    }

    /// The full state as one update.
    pub fn encode(&self) -> Vec<u8> {
        self.encode_since(&VersionVector::new())
    }

    /// The operations a replica at version `since` lacks, as one update, in causal order.
    pub fn encode_since(&self, since: &VersionVector) -> Vec<u8> {
        let runs = self.runs_since(since);
        encoding::encode_runs(&runs, &self.changes_for(&runs))
    }

    /// Applies an update from a peer or from disk.
    ///
    /// Operations already applied are skipped, so an update may be applied twice or
    /// overlap others. Operations whose dependencies have not arrived wait (up to the
    /// [pending limit](Self::set_pending_limit)) and are applied as soon as they can be.
    /// On error nothing changed.
    pub fn apply_update(&mut self, update: &[u8]) -> Result<ApplyReport, DecodeError> {
        self.start_recording();
        let r = self.apply_update_inner(update);
        match r {
            Ok(_) => self.finish_recording(false),
            Err(_) => self.recorder = None,
        }
        r
    }

    fn apply_update_inner(&mut self, update: &[u8]) -> Result<ApplyReport, DecodeError> {
        if self.log.next_lv() == 0 && self.pending.is_empty() && self.fields.is_empty() {
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

    /// For each replica, one past the last of its operations that `update` carries,
    /// without applying anything. A relay uses it to check who authored an update
    /// before accepting it: the update adds ops of replica `r` that a document lacks
    /// exactly when the extent's entry for `r` exceeds the document's version.
    pub fn update_extent(update: &[u8]) -> Result<VersionVector, DecodeError> {
        let mut extent = VersionVector::new();
        encoding::decode_each(
            update,
            &mut Vec::new(),
            |_, _| {},
            |run| {
                extent.observe(run.replica, run.seq.saturating_add(u64::from(run.len)));
                Ok(true)
            },
        )?;
        Ok(extent)
    }

    /// How many operations may wait for missing dependencies.
    pub(crate) fn pending_limit(&self) -> usize {
        self.pending_limit
    }

    /// Operations waiting for missing dependencies.
    pub fn pending_len(&self) -> usize {
        self.pending_ops
    }

    /// Sets how many operations may wait for missing dependencies (default 2^20). An
    /// update that would make more wait is refused with [`DecodeError::PendingOverflow`].
    pub fn set_pending_limit(&mut self, ops: usize) {
        self.pending_limit = ops;
    }

    /// Verifies internal invariants: tree counts and links, the LV index, the op log
    /// and the version vector. Meant for tests; an error is a bug in Chorus.
    pub fn check(&self) -> Result<(), CheckError> {
        let err = |s: String| Err(CheckError(s));
        self.log.changes.check().map_err(CheckError)?;
        let mut lv = 0;
        for e in &self.log.entries {
            if e.lv != lv || e.len == 0 {
                return err(format!("log entry at lv {} is not contiguous", e.lv));
            }
            lv = e.end();
        }
        for (i, a) in self.log.agents.iter().enumerate() {
            let mut next = 0;
            for s in &a.spans {
                if s.seq != next {
                    return err(format!("replica {} has a gap at seq {next}", a.id));
                }
                next += u64::from(s.len);
                for k in 0..s.len {
                    let (agent, seq) = self.log.id_of(s.lv + k);
                    if agent as usize != i || seq != s.seq + u64::from(k) {
                        return err(format!("seq map of {} disagrees with the log", a.id));
                    }
                }
            }
            if self.log.version.get(&a.id) != next {
                return err(format!("version of {} is wrong", a.id));
            }
        }
        let mut items = 0u64;
        let mut inserted = 0u64;
        for e in &self.log.entries {
            if let Op::Insert { .. } = e.op {
                inserted += u64::from(e.len);
            }
        }
        for (fi, f) in self.fields.iter().enumerate() {
            if f.parent != ROOT
                && (f.parent as usize >= fi || self.fields[f.parent as usize].kind != Kind::Map)
            {
                return err(format!("field {} has a bad parent", f.name));
            }
            let Body::Seq(tree) = &self.branch.bodies[fi] else {
                continue;
            };
            tree.check(&self.branch.index).map_err(CheckError)?;
            let mut chars = 0u32;
            for r in tree.runs() {
                chars += if r.deleted() { 0 } else { r.len };
                let e = &self.log.entries[self.log.entry_index(r.lv)];
                if e.field as usize != fi {
                    return err(format!("lv {} is in the wrong field", r.lv));
                }
                let ok = if f.kind == Kind::List {
                    r.byte_len == r.len
                        && r.utf16_len == r.len
                        && (r.byte_start + r.len) as usize <= self.elems.len()
                } else {
                    r.text(&self.content).chars().count() == r.len as usize
                };
                if !ok {
                    return err(format!("run at lv {} has the wrong content", r.lv));
                }
                items += u64::from(r.len);
            }
            if chars != tree.total().chars {
                return err(format!("field {} visible count is wrong", f.name));
            }
        }
        // Every item is hidden by exactly the delete ops that target it and are not
        // undone.
        let mut undone: HashMap<Lv, u32> = HashMap::new();
        for e in &self.log.entries {
            if let Op::Undelete { target } = e.op {
                for d in target..target + e.len {
                    *undone.entry(d).or_default() += 1;
                }
            }
        }
        if undone != self.branch.undone {
            return err("the undone-deletes table disagrees with the log".into());
        }
        let mut dels: HashMap<Lv, u32> = HashMap::new();
        for e in &self.log.entries {
            if let Op::Delete { .. } = e.op {
                for d in e.lv..e.end() {
                    if !undone.contains_key(&d) {
                        *dels.entry(Self::delete_target(e, d)).or_default() += 1;
                    }
                }
            }
        }
        for body in &self.branch.bodies {
            if let Body::Seq(tree) = body {
                for r in tree.runs() {
                    for lv in r.lv..r.lv + r.len {
                        if dels.get(&lv).copied().unwrap_or(0) != r.dels {
                            return err(format!("item {lv} has the wrong delete count"));
                        }
                    }
                }
            }
        }
        // Counter, register and map states equal a replay of their ops.
        let mut replay: Vec<Body> = self
            .fields
            .iter()
            .map(|f| match f.kind {
                Kind::Text | Kind::List => Body::Counter(0),
                _ => Body::new(&f.kind),
            })
            .collect();
        for e in &self.log.entries {
            if let Op::Atom { idx } = e.op {
                let f = &self.fields[e.field as usize];
                if e.len != 1 || idx as usize >= self.log.atoms.len() || f.kind == Kind::Text {
                    return err(format!("atom at lv {} is malformed", e.lv));
                }
                let atom = &self.log.atoms[idx as usize];
                apply_atom_to(
                    &mut replay[e.field as usize],
                    &f.kind,
                    &self.rules,
                    atom,
                    e.lv,
                );
            }
        }
        for ((a, body), b) in self.fields.iter().zip(&self.branch.bodies).zip(&replay) {
            let same = match (body, b) {
                (Body::Seq(_), _) => true,
                (Body::Counter(x), Body::Counter(y)) => x == y,
                (Body::Register(x), Body::Register(y)) => x == y,
                (
                    Body::Merged {
                        value: x,
                        unmerged: u,
                    },
                    Body::Merged {
                        value: y,
                        unmerged: v,
                    },
                ) => x == y && u == v,
                (Body::Map(x), Body::Map(y)) => x == y,
                _ => false,
            };
            if !same {
                return err(format!("state of field {} differs from its ops", a.name));
            }
        }
        if items != inserted {
            return err(format!(
                "trees hold {items} items, log has {inserted} inserts"
            ));
        }
        if self.pending.len() != self.pending_keys.len()
            || self
                .pending
                .iter()
                .any(|r| !self.pending_keys.contains(&pending_key(r)))
        {
            return err("pending keys are wrong".into());
        }
        let pending: usize = self.pending.iter().map(|r| r.len as usize).sum();
        if pending != self.pending_ops {
            return err("pending count is wrong".into());
        }
        Ok(())
    }

    // ------------------------------------------------------------ internals

    /// Builds the LV index if it is not built yet.
    pub(crate) fn ensure_index(&mut self) {
        if self.branch.index.is_on() {
            return;
        }
        self.branch.index.start(self.log.next_lv() as usize);
        let Branch { bodies, index, .. } = &mut self.branch;
        for body in bodies.iter() {
            if let Body::Seq(t) = body {
                t.fill_index(index);
            }
        }
    }

    /// Whether `last_field` is the field `name` of `parent` with `kind`.
    #[inline]
    fn is_last_field(&self, parent: u32, name: &str, kind: &Kind) -> bool {
        self.fields.get(self.last_field as usize).is_some_and(|f| {
            // Names are short: an inline byte comparison beats a call to memcmp.
            let (a, b) = (f.name.as_bytes(), name.as_bytes());
            f.parent == parent
                && a.len() == b.len()
                && a.iter().zip(b).all(|(x, y)| x == y)
                && same_kind(&f.kind, kind)
        })
    }

    /// The field `name` of `parent` with `kind`, if it exists here.
    pub(crate) fn find_field(&self, parent: u32, name: &str, kind: &Kind) -> Option<u32> {
        // Transactions mostly edit the field the previous one edited.
        if self.is_last_field(parent, name, kind) {
            return Some(self.last_field);
        }
        // Documents have few fields: a scan beats hashing the name.
        if self.fields.len() <= 8 {
            self.fields
                .iter()
                .position(|f| f.is(parent, name, kind))
                .map(|f| f as u32)
        } else {
            self.field_index
                .get(&(parent, name_hash(name)))?
                .iter()
                .copied()
                .find(|&f| self.fields[f as usize].is(parent, name, kind))
        }
    }

    /// The field `name` of `parent` with `kind`, created if new.
    #[inline]
    pub(crate) fn field_id(&mut self, parent: u32, name: &str, kind: &Kind) -> u32 {
        if self.is_last_field(parent, name, kind) {
            return self.last_field;
        }
        self.field_id_slow(parent, name, kind)
    }

    fn field_id_slow(&mut self, parent: u32, name: &str, kind: &Kind) -> u32 {
        let f = match self.find_field(parent, name, kind) {
            Some(f) => f,
            None => self.add_field(parent, name, kind.clone()),
        };
        self.last_field = f;
        f
    }

    fn add_field(&mut self, parent: u32, name: &str, kind: Kind) -> u32 {
        let name: Arc<str> = name.into();
        let key = Arc::new(FieldKey {
            parent: (parent != ROOT).then(|| self.fields[parent as usize].key.clone()),
            name: name.clone(),
            kind: kind.clone(),
        });
        let f = self.fields.len() as u32;
        self.branch.bodies.push(Body::new(&kind));
        self.branch.first.push(None);
        self.fields.push(Field {
            parent,
            name: name.clone(),
            kind,
            key,
        });
        self.field_index
            .entry((parent, name_hash(&name)))
            .or_default()
            .push(f);
        f
    }

    /// The field that `key` names, if it exists here.
    pub(crate) fn find_key(&self, key: &Arc<FieldKey>) -> Option<u32> {
        // Runs of one update share their field's key, which the field adopts.
        if let Some(f) = self.fields.get(self.last_field as usize) {
            if Arc::ptr_eq(&f.key, key) {
                return Some(self.last_field);
            }
        }
        let parent = match &key.parent {
            None => ROOT,
            Some(p) => self.find_key(p)?,
        };
        self.find_field(parent, &key.name, &key.kind)
    }

    /// The field that `key` names, created (with its parents) if new.
    fn field_of_key(&mut self, key: &Arc<FieldKey>) -> u32 {
        if let Some(f) = self.fields.get(self.last_field as usize) {
            if Arc::ptr_eq(&f.key, key) {
                return self.last_field;
            }
        }
        let parent = match &key.parent {
            None => ROOT,
            Some(p) => self.field_of_key(p),
        };
        let f = self.field_id(parent, &key.name, &key.kind);
        // The same key, shared: the next runs of this update find it by pointer.
        self.fields[f as usize].key = key.clone();
        f
    }

    /// How deep field `f` is nested (root fields: 0).
    pub(crate) fn depth(&self, mut f: u32) -> usize {
        let mut d = 0;
        while self.fields[f as usize].parent != ROOT {
            f = self.fields[f as usize].parent;
            d += 1;
        }
        d
    }

    /// Records that field `f` has an op stamped (`lamport`, `replica`).
    fn touch(&mut self, f: u32, lamport: u64, replica: ReplicaId) {
        let first = &mut self.branch.first[f as usize];
        if first.is_none_or(|x| (lamport, replica) < x) {
            *first = Some((lamport, replica));
        }
    }

    fn ensure_capacity(&self, ops: usize, bytes: usize) -> bool {
        u64::from(self.log.next_lv()) + ops as u64 <= MAX_OPS
            && self.content.len() as u64 + bytes as u64 <= u64::from(u32::MAX)
    }

    fn local_insert(&mut self, field: u32, pos: usize, text: &str) -> Result<(), EditError> {
        let len = self.branch.seq(field).total().chars as usize;
        if pos > len {
            return Err(EditError::OutOfRange { pos, len });
        }
        if text.is_empty() {
            return Ok(());
        }
        let (n, utf16) = text
            .chars()
            .fold((0u32, 0u32), |(n, u), c| (n + 1, u + c.len_utf16() as u32));
        if !self.ensure_capacity(n as usize, text.len()) {
            return Err(EditError::TooLarge);
        }
        let byte_start = self.content.len() as u32;
        crate::grow::reserve_str(&mut self.content, text.len());
        self.content.push_str(text);
        self.insert_local_run(field, pos, n, byte_start, text.len() as u32, utf16);
        Ok(())
    }

    /// Inserts list elements at `pos`.
    pub(crate) fn local_insert_values(
        &mut self,
        field: u32,
        pos: usize,
        values: Vec<Value>,
    ) -> Result<(), EditError> {
        let len = self.branch.seq(field).total().chars as usize;
        if pos > len {
            return Err(EditError::OutOfRange { pos, len });
        }
        if values.is_empty() {
            return Ok(());
        }
        for v in &values {
            check_depth(v)?;
        }
        let n = values.len();
        if !self.ensure_capacity(n, 0) {
            return Err(EditError::TooLarge);
        }
        let start = self.elems.len() as u32;
        self.elems.extend(values);
        let n = n as u32;
        self.insert_local_run(field, pos, n, start, n, n);
        Ok(())
    }

    /// Places `n` new items at visible position `pos` of `field` — between the item
    /// (tombstones included) just before it and the next visible item — and logs them.
    /// Their content is already in the arena at `byte_start`.
    fn insert_local_run(
        &mut self,
        field: u32,
        pos: usize,
        n: u32,
        byte_start: u32,
        byte_len: u32,
        utf16_len: u32,
    ) {
        let tree = self.branch.seq_mut(field);
        let (cur, origin_right) = match tree.find_char(pos as u32) {
            Some((cur, _)) => (cur, tree.item_at(cur)),
            None => (tree.end(), NONE),
        };
        let origin_left = tree.item_before(cur);
        let run = Run {
            lv: self.log.next_lv(),
            len: n,
            origin_left,
            origin_right,
            byte_start,
            byte_len,
            utf16_len,
            dels: 0,
        };
        self.branch.insert(field, cur, run, &self.content);
        self.push_local(
            field,
            Op::Insert {
                origin_left,
                origin_right,
                byte_start,
                byte_len,
            },
            n,
        );
    }

    #[inline]
    fn push_local(&mut self, field: u32, op: Op, len: u32) {
        let me = self.me;
        let seq = self.log.agents[me as usize].next_seq();
        let lamport = self.log.max_lamport + 1;
        if self.branch.first[field as usize].is_none() {
            self.touch(field, lamport, self.replica);
        }
        self.log.push(me, seq, lamport, field, op, len);
    }

    /// Makes a local counter, register or map op and applies it.
    pub(crate) fn local_atom(&mut self, field: u32, atom: Atom) -> Result<(), EditError> {
        if !self.ensure_capacity(1, 0) {
            return Err(EditError::TooLarge);
        }
        if let Atom::Set {
            value: Some(MapValue::Value(v)),
            ..
        } = &atom
        {
            check_depth(v)?;
        }
        let lv = self.log.next_lv();
        let idx = self.log.atoms.len() as u32;
        crate::grow::reserve_one(&mut self.log.atoms);
        self.log.atoms.push(atom);
        self.push_local(field, Op::Atom { idx }, 1);
        self.apply_atom(field, lv, idx);
        Ok(())
    }

    /// Updates field `field`'s state with atom `idx`, applied as op `lv`.
    fn apply_atom(&mut self, field: u32, lv: Lv, idx: u32) {
        if self.recorder.is_some() {
            let atom = self.log.atoms[idx as usize].clone();
            self.record_atom(field, &atom);
        }
        apply_atom_to(
            &mut self.branch.bodies[field as usize],
            &self.fields[field as usize].kind,
            &self.rules,
            &self.log.atoms[idx as usize],
            lv,
        );
    }

    pub(crate) fn local_delete(
        &mut self,
        field: u32,
        pos: usize,
        len: usize,
    ) -> Result<(), EditError> {
        let total = self.branch.seq(field).total().chars as usize;
        match pos.checked_add(len) {
            Some(end) if end <= total => {}
            _ => {
                return Err(EditError::OutOfRange {
                    pos: pos.saturating_add(len),
                    len: total,
                });
            }
        }
        if !self.ensure_capacity(len, 0) {
            return Err(EditError::TooLarge);
        }
        let mut remaining = len as u32;
        while remaining > 0 {
            let (tree, index) = self.branch.seq_and_index(field);
            let (cur, _) = tree.find_char(pos as u32).expect("range was checked");
            let r = *tree.run(cur.leaf, cur.idx);
            let take = remaining.min(r.len - cur.off);
            let target = r.lv + cur.off;
            tree.add_dels_at(cur, take, true, &self.content, index);
            self.record_touched(field, target, take, true);
            self.push_local(
                field,
                Op::Delete {
                    target,
                    backward: false,
                },
                take,
            );
            remaining -= take;
        }
        Ok(())
    }

    fn utf16_to_char_in(&self, field: Option<u32>, pos: usize) -> Result<usize, EditError> {
        TextView {
            doc: self,
            branch: &self.branch,
            field,
        }
        .utf16_to_char(pos)
    }

    /// Integrates a remote insert run (LVs already assigned) with FugueMax ordering.
    ///
    /// This is the "YjsMod" integration, equivalent to FugueMax: scan from the left
    /// origin towards the right origin and place the run before the first item whose
    /// left origin lies further left, or that ties with it and sorts after it.
    fn integrate_insert(&mut self, field: u32, run: Run, replica: ReplicaId) {
        let tree = self.branch.seq(field);
        let (ol, or) = (run.origin_left, run.origin_right);
        let start = if ol == NONE {
            tree.normalize(Cur {
                leaf: tree.first_leaf(),
                idx: 0,
                off: 0,
            })
        } else {
            tree.normalize(tree.after(ol, self.branch.index.leaf(ol)))
        };
        // Nothing concurrent between the origins: the common case.
        let dest = if tree.item_at(start) == or {
            start
        } else {
            self.scan_fugue(field, &run, replica, start)
        };
        self.branch.insert(field, dest, run, &self.content);
    }

    fn raw_pos_of(&self, tree: &Tree, lv: Lv) -> i64 {
        i64::from(tree.raw_pos(tree.locate(lv, self.branch.index.leaf(lv))))
    }

    fn scan_fugue(&self, field: u32, run: &Run, replica: ReplicaId, start: Cur) -> Cur {
        let tree = self.branch.seq(field);
        let total = i64::from(tree.total().raw);
        let left = if run.origin_left == NONE {
            -1
        } else {
            self.raw_pos_of(tree, run.origin_left)
        };
        let right = if run.origin_right == NONE {
            total
        } else {
            self.raw_pos_of(tree, run.origin_right)
        };
        // A right origin at or before the left origin cannot come from an honest
        // replica. Every replica orders existing items alike, so ignoring it (the
        // document end instead) is deterministic and keeps replicas converging.
        let right = if right <= left { total } else { right };
        let mut i = left + 1;
        let mut cur = start;
        let mut dest = start;
        let mut scanning = false;
        loop {
            if !scanning {
                dest = cur;
            }
            if i >= total || i == right {
                break;
            }
            let o = *tree.run(cur.leaf, cur.idx);
            let oleft = if cur.off > 0 {
                i - 1
            } else if o.origin_left == NONE {
                -1
            } else {
                self.raw_pos_of(tree, o.origin_left)
            };
            if oleft < left {
                break;
            }
            if oleft == left {
                let oright = if o.origin_right == NONE {
                    total
                } else {
                    self.raw_pos_of(tree, o.origin_right)
                };
                if oright < right {
                    scanning = true;
                } else if oright == right {
                    let (agent, _) = self.log.id_of(o.lv + cur.off);
                    if replica < self.log.agents[agent as usize].id {
                        break;
                    }
                    scanning = false;
                } else {
                    scanning = false;
                }
                i += 1;
                cur = tree.step(cur);
            } else {
                // Items whose left origin lies inside the scanned region are skipped,
                // and so are the rest of their run (each has its predecessor as left
                // origin), up to the right origin.
                let rest = i64::from(o.len - cur.off);
                let skip = rest.min(right - i);
                i += skip;
                if skip == rest {
                    cur = tree.normalize(Cur {
                        leaf: cur.leaf,
                        idx: cur.idx + 1,
                        off: 0,
                    });
                } else {
                    cur.off += skip as u32;
                }
            }
        }
        dest
    }

    /// Makes local ops that undo this replica's ops `seqs` (in reverse order): inserted
    /// items are deleted, deletes are undone (restoring the original items), undeletes
    /// are deleted again, counter adds are subtracted, and register and map writes
    /// still in effect are replaced by what they superseded. Merge registers cannot
    /// go back (their merge only grows) and are left alone.
    pub(crate) fn invert(&mut self, seqs: &[Range<u64>], now_ms: u64) -> Result<(), EditError> {
        self.ensure_index();
        let me = self.me;
        let mut lvs: Vec<(Lv, u32)> = Vec::new();
        for r in seqs {
            let known = self.log.agents[me as usize].next_seq();
            let end = r.end.min(known);
            if r.start < end {
                lvs.extend(self.log.lv_ranges(me, r.start, end - r.start));
            }
        }
        lvs.sort_unstable();
        // Split along log entries, then undo the newest first.
        let mut pieces: Vec<(usize, Lv, u32)> = Vec::new();
        for (lo, len) in lvs {
            let mut lv = lo;
            let end = lo + len;
            while lv < end {
                let i = self.log.entry_index(lv);
                let e_end = self.log.entries[i].end().min(end);
                pieces.push((i, lv, e_end - lv));
                lv = e_end;
            }
        }
        // Writes to one register or map key: the last one is undone, back to what the
        // first one superseded.
        type WriteKey = (u32, Option<Arc<str>>);
        let mut writes: HashMap<WriteKey, (Lv, Lv)> = HashMap::new();
        for &(i, lo, _) in &pieces {
            let e = &self.log.entries[i];
            if let Op::Atom { idx } = e.op {
                if let Atom::Set { key, .. } = &self.log.atoms[idx as usize] {
                    writes
                        .entry((e.field, key.clone()))
                        .and_modify(|w| w.1 = lo)
                        .or_insert((lo, lo));
                }
            }
        }
        for (i, lo, len) in pieces.into_iter().rev() {
            let e = self.log.entries[i];
            match e.op {
                Op::Insert { .. } => self.local_delete_items(e.field, lo, len)?,
                Op::Delete { .. } => {
                    // Only delete ops not undone already.
                    let mut d = lo;
                    while d < lo + len {
                        if self.branch.undone.contains_key(&d) {
                            d += 1;
                            continue;
                        }
                        let mut n = 1;
                        while d + n < lo + len && !self.branch.undone.contains_key(&(d + n)) {
                            n += 1;
                        }
                        self.local_undelete(e.field, d, n)?;
                        d += n;
                    }
                }
                Op::Undelete { target } => {
                    let first = target + (lo - e.lv);
                    for d in first..first + len {
                        let de = self.log.entries[self.log.entry_index(d)];
                        let item = Self::delete_target(&de, d);
                        self.local_delete_items(e.field, item, 1)?;
                    }
                }
                Op::Atom { idx } => {
                    let first = match &self.log.atoms[idx as usize] {
                        Atom::Set { key, .. } => match writes.get(&(e.field, key.clone())) {
                            Some(&(first, last)) if last == lo => first,
                            _ => continue,
                        },
                        Atom::Add(_) => lo,
                    };
                    if let Some(mut atom) = self.inverse_atom(e.field, lo, first) {
                        if let Atom::Set { key: None, hlc, .. } = &mut atom {
                            // A register write: stamped like any other.
                            *hlc = crate::types::hlc::next(self.hlc, now_ms);
                            self.hlc = *hlc;
                        }
                        self.local_atom(e.field, atom)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// The op that undoes atom op `lv` of `field`, if it is still in effect, restoring
    /// what op `first` (the same key's first write in the step) superseded.
    fn inverse_atom(&self, field: u32, lv: Lv, first: Lv) -> Option<Atom> {
        let preds = match self.log.atom_at(first) {
            Atom::Set { preds, .. } => &preds[..],
            Atom::Add(_) => &[],
        };
        match (self.log.atom_at(lv), &self.branch.bodies[field as usize]) {
            (Atom::Add(d), _) => Some(Atom::Add(d.wrapping_neg())),
            (Atom::Set { .. }, Body::Register(writes)) => {
                if !self.all_mine(writes) {
                    return None;
                }
                let value = self.shown_among(preds, true);
                Some(Atom::Set {
                    key: None,
                    value,
                    hlc: 0,
                    preds: writes.as_slice().into(),
                })
            }
            (Atom::Set { key: Some(key), .. }, Body::Map(keys)) => {
                let current = keys.get(key).map_or(&[][..], |w| w.as_slice());
                // Still ours: nobody else's write shows there since.
                if !self.all_mine(current) {
                    return None;
                }
                Some(Atom::Set {
                    key: Some(key.clone()),
                    value: self.shown_among(preds, false),
                    hlc: 0,
                    preds: current.into(),
                })
            }
            _ => None,
        }
    }

    /// Whether every op of `lvs` is this replica's (so an undo overwrites nobody).
    fn all_mine(&self, lvs: &[Lv]) -> bool {
        lvs.iter()
            .all(|&lv| self.log.entries[self.log.entry_index(lv)].agent == self.me)
    }

    /// What the writes `lvs` showed: the value of the one with the highest (clock,
    /// replica) for registers, (Lamport, replica) for maps; `None` for none.
    fn shown_among(&self, lvs: &[Lv], by_clock: bool) -> Option<MapValue> {
        lvs.iter()
            .filter_map(|&lv| match self.log.atom_at(lv) {
                Atom::Set {
                    value: Some(v),
                    hlc: stamp,
                    ..
                } => {
                    let (lamport, replica, _) = self.stamp(lv);
                    let order = if by_clock { *stamp } else { lamport };
                    Some(((order, replica), v))
                }
                _ => None,
            })
            .max_by(|a, b| a.0.cmp(&b.0))
            .map(|(_, v)| v.clone())
    }

    /// Deletes items `lo..lo + len` of `field` by id, visible or not (an undo of their
    /// insertion: a later undo of someone's delete must not bring them back).
    pub(crate) fn local_delete_items(
        &mut self,
        field: u32,
        lo: Lv,
        len: u32,
    ) -> Result<(), EditError> {
        if !self.ensure_capacity(len as usize, 0) {
            return Err(EditError::TooLarge);
        }
        self.push_local(
            field,
            Op::Delete {
                target: lo,
                backward: false,
            },
            len,
        );
        self.change_dels(field, lo, lo + len - 1, true);
        Ok(())
    }

    /// Undoes this replica's delete ops `target..target + len` of `field`.
    pub(crate) fn local_undelete(
        &mut self,
        field: u32,
        target: Lv,
        len: u32,
    ) -> Result<(), EditError> {
        if !self.ensure_capacity(len as usize, 0) {
            return Err(EditError::TooLarge);
        }
        self.push_local(field, Op::Undelete { target }, len);
        self.undelete(field, target, len);
        Ok(())
    }

    /// Adds one delete to the items `lo..=hi` of `field`.
    fn delete_range(&mut self, field: u32, lo: Lv, hi: Lv) {
        self.change_dels(field, lo, hi, true);
    }

    /// Adds one delete to (`up`), or removes one from, the items `lo..=hi` of `field`.
    fn change_dels(&mut self, field: u32, lo: Lv, hi: Lv, up: bool) {
        let mut lv = lo;
        while lv <= hi {
            if self.recorder.is_some() {
                let tree = self.branch.seq(field);
                let cur = tree.locate(lv, self.branch.index.leaf(lv));
                let r = tree.run(cur.leaf, cur.idx);
                let n = (r.len - cur.off).min(hi - lv + 1);
                let visible = !r.deleted();
                self.record_touched(field, lv, n, visible);
            }
            let (tree, index) = self.branch.seq_and_index(field);
            let done = tree.add_dels(lv, hi - lv + 1, up, &self.content, index);
            lv += done;
        }
    }

    /// The item that delete op `lv` (of entry `e`) targets.
    pub(crate) fn delete_target(e: &Entry, lv: Lv) -> Lv {
        match e.op {
            Op::Delete { target, backward } if backward => target - (lv - e.lv),
            Op::Delete { target, .. } => target + (lv - e.lv),
            _ => unreachable!("not a delete"),
        }
    }

    /// Applies an undelete of delete ops `target..target + len` (all of `field`): each
    /// delete op is undone once, however many undeletes name it.
    fn undelete(&mut self, field: u32, target: Lv, len: u32) {
        for d in target..target + len {
            let n = self.branch.undone.entry(d).or_insert(0);
            *n += 1;
            if *n == 1 {
                let e = self.log.entries[self.log.entry_index(d)];
                let item = Self::delete_target(&e, d);
                self.change_dels(field, item, item, false);
            }
        }
    }

    /// The ops a replica at `since` lacks, as wire runs in LV (causal) order.
    fn runs_since(&self, since: &VersionVector) -> Vec<WireRun> {
        self.runs_in(since, None)
    }

    /// The ops of version `to` that `from` lacks, as wire runs in LV (causal) order.
    pub(crate) fn runs_between(&self, from: &VersionVector, to: &VersionVector) -> Vec<WireRun> {
        self.runs_in(from, Some(to))
    }

    /// The ops `since` lacks (of those `until` includes, or all), in LV order.
    fn runs_in(&self, since: &VersionVector, until: Option<&VersionVector>) -> Vec<WireRun> {
        let mut ranges: Vec<(Lv, Lv)> = Vec::new();
        for a in &self.log.agents {
            let from = since.get(&a.id);
            let to = until.map_or(a.next_seq(), |u| u.get(&a.id).min(a.next_seq()));
            if from >= to {
                continue;
            }
            let i = a
                .spans
                .partition_point(|s| s.seq + u64::from(s.len) <= from);
            for s in &a.spans[i..] {
                if s.seq >= to {
                    break;
                }
                let skip = from.saturating_sub(s.seq) as u32;
                let end = (to - s.seq).min(u64::from(s.len)) as u32;
                ranges.push((s.lv + skip, s.lv + end));
            }
        }
        ranges.sort_unstable();
        let mut out = Vec::new();
        for (lo, hi) in ranges {
            let mut i = self.log.entry_index(lo);
            let mut lv = lo;
            while lv < hi {
                let e = &self.log.entries[i];
                let end = e.end().min(hi);
                self.wire_runs(e, lv, end, &mut out);
                lv = end;
                i += 1;
            }
        }
        out
    }

    fn op_id(&self, lv: Lv) -> Option<OpId> {
        (lv != NONE).then(|| {
            let (a, seq) = self.log.id_of(lv);
            OpId::new(self.log.agents[a as usize].id, seq)
        })
    }

    /// Appends the wire runs for ops `lo..hi` of entry `e`.
    fn wire_runs(&self, e: &Entry, lo: Lv, hi: Lv, out: &mut Vec<WireRun>) {
        let k = lo - e.lv;
        let replica = self.log.agents[e.agent as usize].id;
        let f = &self.fields[e.field as usize];
        let field = f.key.clone();
        let seq = self.log.id_of(lo).1;
        let lamport = e.lamport + u64::from(k);
        match e.op {
            Op::Insert {
                origin_left,
                origin_right,
                byte_start,
                byte_len,
            } => {
                // Deleted text is sent too: a peer may undo a delete later, and a
                // peer whose version was guessed wrong may not get the delete yet.
                let content = if f.kind == Kind::List {
                    let start = (byte_start + k) as usize;
                    Content::Values(self.elems[start..start + (hi - lo) as usize].to_vec())
                } else {
                    let text = &self.content[byte_start as usize..(byte_start + byte_len) as usize];
                    Content::Text(if text.len() == e.len as usize {
                        text[k as usize..(hi - e.lv) as usize].to_owned()
                    } else {
                        text.chars()
                            .skip(k as usize)
                            .take((hi - lo) as usize)
                            .collect()
                    })
                };
                push_coalesced(
                    out,
                    WireRun {
                        replica,
                        seq,
                        lamport,
                        len: hi - lo,
                        field,
                        op: WireOp::Insert {
                            left: self.op_id(if k == 0 { origin_left } else { lo - 1 }),
                            right: self.op_id(origin_right),
                            content,
                        },
                    },
                );
            }
            Op::Delete { .. } | Op::Undelete { .. } => {
                let (target, backward, undelete) = match e.op {
                    Op::Delete { target, backward } => (target, backward, false),
                    Op::Undelete { target } => (target, false, true),
                    _ => unreachable!(),
                };
                // The targets (items, or the delete ops an undelete undoes) may belong
                // to several replicas: one wire run per stretch of consecutive ids.
                let mut done = 0u32;
                let total = hi - lo;
                while done < total {
                    let t = if backward {
                        target - k - done
                    } else {
                        target + k + done
                    };
                    let ti = self.log.entry_index(t);
                    let te = &self.log.entries[ti];
                    let avail = if backward {
                        t - te.lv + 1
                    } else {
                        te.end() - t
                    };
                    let take = avail.min(total - done);
                    let (ta, tseq) = self.log.id_of(t);
                    push_coalesced(
                        out,
                        WireRun {
                            replica,
                            seq: seq + u64::from(done),
                            lamport: lamport + u64::from(done),
                            len: take,
                            field: field.clone(),
                            op: {
                                let target = OpId::new(self.log.agents[ta as usize].id, tseq);
                                if undelete {
                                    WireOp::Undelete { target }
                                } else {
                                    WireOp::Delete {
                                        target,
                                        backward: backward && take > 1,
                                    }
                                }
                            },
                        },
                    );
                    done += take;
                }
            }
            Op::Atom { idx } => {
                let op = match &self.log.atoms[idx as usize] {
                    Atom::Add(delta) => WireOp::Add { delta: *delta },
                    Atom::Set {
                        key,
                        value,
                        hlc,
                        preds,
                    } => WireOp::Set {
                        key: key.clone(),
                        value: value.clone(),
                        hlc: *hlc,
                        preds: preds
                            .iter()
                            .map(|&p| self.op_id(p).expect("a pred is an op"))
                            .collect(),
                    },
                };
                out.push(WireRun {
                    replica,
                    seq,
                    lamport,
                    len: 1,
                    field,
                    op,
                });
            }
        }
    }

    // ------------------------------------------------------------ applying updates

    /// The code of field `name` during planning: its index if it exists here, else a
    /// new index past the existing fields.
    fn field_code(&self, plan: &mut Plan, key: &Arc<FieldKey>) -> u32 {
        if let Some(f) = self.find_key(key) {
            return f;
        }
        let base = self.fields.len() as u32;
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
        if self.branch.index.is_on() && self.fields.len() == 1 {
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
        self.content.reserve(new_bytes);
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
        self.touch(field, run.lamport, run.replica);
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
                        let byte_start = self.content.len() as u32;
                        crate::grow::reserve_str(&mut self.content, content.len());
                        self.content.push_str(content);
                        let utf16 = if content.len() == run.len as usize {
                            run.len
                        } else {
                            content.chars().map(|c| c.len_utf16() as u32).sum()
                        };
                        (byte_start, content.len() as u32, utf16)
                    }
                    ContentRef::Values(values) => {
                        let start = self.elems.len() as u32;
                        self.elems.extend_from_slice(values);
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
                self.hlc = self.hlc.max(hlc);
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

    /// Forgets the fields from `from` on.
    fn drop_fields(&mut self, from: usize) {
        for f in from..self.fields.len() {
            let key = (self.fields[f].parent, name_hash(&self.fields[f].name));
            if let Some(v) = self.field_index.get_mut(&key) {
                v.retain(|&x| (x as usize) < from);
                if v.is_empty() {
                    self.field_index.remove(&key);
                }
            }
        }
        self.fields.truncate(from);
        self.branch.bodies.truncate(from);
        self.branch.first.truncate(from);
        if self.last_field as usize >= from {
            self.last_field = 0;
        }
    }

    /// Drops every op from `t.lv` on and rebuilds the fields from the log.
    fn rollback(&mut self, t: &Rollback) {
        let lv = t.lv;
        if self.log.next_lv() == lv {
            // No ops: at most some fields were named, and they are still empty.
            self.drop_fields(t.fields);
            return;
        }
        self.log.truncate(lv, &self.content);
        self.content.truncate(t.content);
        self.elems.truncate(t.elems);
        self.log.atoms.truncate(t.atoms);
        self.hlc = t.hlc;
        self.drop_fields(t.fields);
        self.branch.index.start(lv as usize);
        for (f, body) in self.fields.iter().zip(&mut self.branch.bodies) {
            *body = Body::new(&f.kind);
        }
        self.branch.first.fill(None);
        self.branch.undone.clear();
        // The log stays in place: integrating reads it (replica ids for ties).
        for i in 0..self.log.entries.len() {
            let e = self.log.entries[i];
            let replica = self.log.agents[e.agent as usize].id;
            self.touch(e.field, e.lamport, replica);
            match e.op {
                Op::Insert {
                    origin_left,
                    origin_right,
                    byte_start,
                    byte_len,
                } => {
                    let utf16_len = if self.fields[e.field as usize].kind == Kind::List {
                        e.len
                    } else {
                        self.content[byte_start as usize..(byte_start + byte_len) as usize]
                            .chars()
                            .map(|c| c.len_utf16() as u32)
                            .sum()
                    };
                    let run = Run {
                        lv: e.lv,
                        len: e.len,
                        origin_left,
                        origin_right,
                        byte_start,
                        byte_len,
                        utf16_len,
                        dels: 0,
                    };
                    self.integrate_insert(e.field, run, replica);
                }
                Op::Delete { .. } => {
                    let (lo, hi) = e.delete_targets().expect("a delete");
                    self.delete_range(e.field, lo, hi);
                }
                Op::Atom { idx } => self.apply_atom(e.field, e.lv, idx),
                Op::Undelete { target } => self.undelete(e.field, target, e.len),
            }
        }
    }
}

/// Appends `run` to `out`, merged into the last run when it continues it: a run's
/// pieces that only the log or the tree kept apart go out as one, so an update
/// decodes into a state that encodes to the same bytes.
fn push_coalesced(out: &mut Vec<WireRun>, run: WireRun) {
    if let Some(last) = out.last_mut() {
        if last.replica == run.replica
            && last.end_seq() == run.seq
            && last.lamport + u64::from(last.len) == run.lamport
            && last.field == run.field
            && u64::from(last.len) + u64::from(run.len) <= u64::from(u32::MAX)
        {
            match (&mut last.op, &run.op) {
                (
                    WireOp::Insert {
                        right: r0,
                        content: c0,
                        ..
                    },
                    WireOp::Insert {
                        left,
                        right,
                        content,
                    },
                ) if *left == Some(OpId::new(run.replica, run.seq - 1)) && right == r0 => {
                    match (c0, content) {
                        (Content::Text(a), Content::Text(b)) => a.push_str(b),
                        (Content::Values(a), Content::Values(b)) => a.extend_from_slice(b),
                        _ => unreachable!("one field holds one kind of content"),
                    }
                    last.len += run.len;
                    return;
                }
                (
                    WireOp::Delete {
                        target: t0,
                        backward: b0,
                    },
                    WireOp::Delete { target, backward },
                ) if t0.replica == target.replica => {
                    let n0 = u64::from(last.len);
                    if !*b0 && !*backward && t0.seq + n0 == target.seq {
                        last.len += run.len;
                        return;
                    }
                    if (*b0 || n0 == 1)
                        && (*backward || run.len == 1)
                        && t0.seq.checked_sub(n0) == Some(target.seq)
                    {
                        *b0 = true;
                        last.len += run.len;
                        return;
                    }
                }
                (WireOp::Undelete { target: t0 }, WireOp::Undelete { target })
                    if t0.replica == target.replica
                        && t0.seq + u64::from(last.len) == target.seq =>
                {
                    last.len += run.len;
                    return;
                }
                _ => {}
            }
        }
    }
    out.push(run);
}

fn pending_key(run: &WireRun) -> (ReplicaId, u64, u32) {
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
    fn next_seq(&self, r: ReplicaId) -> Option<u64> {
        let spans = &self.replicas[self.replica_index.get(&r)?];
        spans.last().map(|&(seq, _, len)| seq + u64::from(len))
    }

    fn add(&mut self, i: usize, run: &WireRun, skip: u32, code: u32) {
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

impl<'d> Transaction<'d> {
    /// The text field `name`, created on first use.
    pub fn text(&mut self, name: &str) -> TextMut<'_> {
        let field = self.doc.field_id(ROOT, name, &Kind::Text);
        TextMut {
            doc: self.doc,
            field,
        }
    }

    /// Commits; `None` if the transaction made no operations.
    pub fn commit(self) -> Option<Change> {
        self.commit_with(CommitOptions::default())
    }

    /// Commits with a message and time kept in the log and sent with the change's
    /// operations (see [`Doc::history`] and [`TextView::blame`]); `None` if the
    /// transaction made no operations (nothing is recorded then).
    pub fn commit_with(self, options: CommitOptions) -> Option<Change> {
        let mut this = std::mem::ManuallyDrop::new(self);
        let me = this.doc.me;
        this.doc.log.refresh_version(me);
        this.doc.finish_recording(true);
        let doc: &Doc = &*this.doc;
        let end = doc.log.agents[doc.me as usize].next_seq();
        let change = (end > this.start_seq).then(|| Change {
            replica: doc.replica,
            seqs: this.start_seq..end,
            lamport: this.start_lamport,
        })?;
        if !options.is_empty() {
            this.doc.log.changes.insert(ChangeMeta {
                replica: change.replica,
                seq: change.seqs.start,
                len: change.seqs.end - change.seqs.start,
                time: options.time,
                message: options.message.map(Into::into),
            });
        }
        Some(change)
    }

    /// Discards the transaction's edits (what dropping it does).
    pub fn rollback(self) {}
}

impl Drop for Transaction<'_> {
    fn drop(&mut self) {
        let t = Rollback {
            lv: self.start_lv,
            content: self.start_content,
            elems: self.start_elems,
            atoms: self.start_atoms,
            hlc: self.start_hlc,
            fields: self.fields_before,
        };
        self.doc.recorder = None;
        self.doc.rollback(&t);
    }
}

/// Where a transaction started: what rolling it back truncates to.
struct Rollback {
    lv: Lv,
    content: usize,
    elems: usize,
    atoms: usize,
    hlc: u64,
    fields: usize,
}

impl fmt::Debug for Transaction<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transaction")
            .field("replica", &self.doc.replica)
            .field("start_seq", &self.start_seq)
            .finish_non_exhaustive()
    }
}

impl TextMut<'_> {
    /// Inserts `text` at char position `pos` (0 ≤ `pos` ≤ `len()`).
    pub fn insert(&mut self, pos: usize, text: &str) -> Result<(), EditError> {
        self.doc.local_insert(self.field, pos, text)
    }

    /// Deletes `len` chars starting at char position `pos`.
    pub fn delete(&mut self, pos: usize, len: usize) -> Result<(), EditError> {
        self.doc.local_delete(self.field, pos, len)
    }

    /// Inserts `text` at UTF-16 position `pos`.
    pub fn insert_utf16(&mut self, pos: usize, text: &str) -> Result<(), EditError> {
        let p = self.doc.utf16_to_char_in(Some(self.field), pos)?;
        self.insert(p, text)
    }

    /// Deletes `len` UTF-16 code units starting at UTF-16 position `pos`; both ends
    /// must fall on char boundaries.
    pub fn delete_utf16(&mut self, pos: usize, len: usize) -> Result<(), EditError> {
        let end = pos.checked_add(len).ok_or(EditError::OutOfRange {
            pos: usize::MAX,
            len: self.view().len_utf16(),
        })?;
        let a = self.doc.utf16_to_char_in(Some(self.field), pos)?;
        let b = self.doc.utf16_to_char_in(Some(self.field), end)?;
        self.delete(a, b - a)
    }

    /// Length in chars.
    pub fn len(&self) -> usize {
        self.view().len()
    }

    /// Whether the text is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A read-only view of the field as edited so far.
    pub fn view(&self) -> TextView<'_> {
        TextView {
            doc: self.doc,
            branch: &self.doc.branch,
            field: Some(self.field),
        }
    }
}

impl fmt::Debug for TextMut<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("TextMut")
            .field(&self.view().to_string())
            .finish()
    }
}

impl<'d> TextView<'d> {
    fn tree(&self) -> Option<&'d Tree> {
        self.field.map(|f| self.branch.seq(f))
    }

    /// Length in chars (Unicode scalar values).
    pub fn len(&self) -> usize {
        self.tree().map_or(0, |t| t.total().chars as usize)
    }

    /// Whether the text is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Length in UTF-16 code units.
    pub fn len_utf16(&self) -> usize {
        self.tree().map_or(0, |t| t.total().utf16 as usize)
    }

    /// Length in UTF-8 bytes.
    pub fn len_utf8(&self) -> usize {
        self.tree().map_or(0, |t| t.total().bytes as usize)
    }

    /// The chars in `range` (char positions).
    pub fn slice(&self, range: Range<usize>) -> Result<String, EditError> {
        let len = self.len();
        if range.start > range.end || range.end > len {
            return Err(EditError::OutOfRange {
                pos: range.end.max(range.start),
                len,
            });
        }
        let mut out = String::new();
        let Some(tree) = self.tree() else {
            return Ok(out);
        };
        if range.is_empty() {
            return Ok(out);
        }
        let content = &self.doc.content;
        let (mut cur, _) = tree
            .find_visible(range.start as u32, Unit::Char, content)?
            .expect("range was checked");
        let mut want = range.end - range.start;
        while want > 0 {
            let r = tree.run(cur.leaf, cur.idx);
            if !r.deleted() {
                let text = r.text(content);
                let take = (r.len - cur.off).min(want as u32);
                if r.byte_len == r.len {
                    out.push_str(&text[cur.off as usize..(cur.off + take) as usize]);
                } else {
                    out.extend(text.chars().skip(cur.off as usize).take(take as usize));
                }
                want -= take as usize;
            }
            cur = tree.normalize(Cur {
                leaf: cur.leaf,
                idx: cur.idx + 1,
                off: 0,
            });
        }
        Ok(out)
    }

    /// Converts a UTF-16 position to a char position.
    pub fn utf16_to_char(&self, pos: usize) -> Result<usize, EditError> {
        let Some(tree) = self.tree() else {
            return if pos == 0 {
                Ok(0)
            } else {
                Err(EditError::OutOfRange { pos, len: 0 })
            };
        };
        let total = tree.total();
        if pos > total.utf16 as usize {
            return Err(EditError::OutOfRange {
                pos,
                len: total.utf16 as usize,
            });
        }
        Ok(
            match tree.find_visible(pos as u32, Unit::Utf16, &self.doc.content) {
                Ok(Some((_, chars))) => chars as usize,
                Ok(None) => total.chars as usize,
                Err(_) => return Err(EditError::NotCharBoundary { pos }),
            },
        )
    }

    /// Converts a char position to a UTF-16 position.
    pub fn char_to_utf16(&self, pos: usize) -> Result<usize, EditError> {
        Ok(self.prefix(pos)?.utf16 as usize)
    }

    /// Converts a char position to a UTF-8 byte offset.
    pub fn char_to_utf8(&self, pos: usize) -> Result<usize, EditError> {
        Ok(self.prefix(pos)?.bytes as usize)
    }

    fn prefix(&self, pos: usize) -> Result<crate::tree::Counts, EditError> {
        let len = self.len();
        if pos > len {
            return Err(EditError::OutOfRange { pos, len });
        }
        Ok(self
            .tree()
            .map(|t| t.prefix_counts(pos as u32, &self.doc.content))
            .unwrap_or_default())
    }
}

impl fmt::Display for TextView<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(tree) = self.tree() else {
            return Ok(());
        };
        for r in tree.runs() {
            if !r.deleted() {
                f.write_str(r.text(&self.doc.content))?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for TextView<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("TextView").field(&self.to_string()).finish()
    }
}

/// The built-in merge rules by name.
fn builtin_rules() -> HashMap<Arc<str>, Arc<dyn MergeRule>> {
    ["max", "min", "union"]
        .into_iter()
        .filter_map(|n| Some((Arc::from(n), crate::merge::builtin(n)?)))
        .collect()
}

/// Values nest at most [`MAX_VALUE_DEPTH`](crate::value::MAX_VALUE_DEPTH) arrays deep,
/// or peers could not decode them.
fn check_depth(v: &Value) -> Result<(), EditError> {
    if v.array_depth() > crate::value::MAX_VALUE_DEPTH {
        Err(EditError::TooDeep)
    } else {
        Ok(())
    }
}

/// `a == b`, cheaper for the kinds without a rule.
#[inline]
fn same_kind(a: &Kind, b: &Kind) -> bool {
    match (a, b) {
        (Kind::Register(x), Kind::Register(y)) => x == y,
        _ => std::mem::discriminant(a) == std::mem::discriminant(b),
    }
}

/// A fixed hash of a field name, for the field index.
fn name_hash(name: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    name.hash(&mut h);
    h.finish()
}
