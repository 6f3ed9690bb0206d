//! The document facade: an op log paired with its current branch, the field table's
//! lookups, and the entry points for encoding and updates. The work is done in the
//! modules named for it (`apply`, `integrate`, `local`, `invert`, `check`, …).

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

use crate::branch::{Body, Branch};
use crate::encoding::{self, WireRun};
use crate::events::{Event, Recorder, TextUnit};
use crate::merge::MergeRule;
use crate::oplog::{Field, OpLog, ROOT};
use crate::tree::Lv;
use crate::types::FieldKey;
use crate::{DecodeError, Kind, ReplicaId, VersionVector};

/// The most operations a document may hold (LVs are `u32`, one value is reserved).
pub(crate) const MAX_OPS: u64 = u32::MAX as u64 - 1;
/// The default bound on operations waiting for missing dependencies.
pub const DEFAULT_PENDING_LIMIT: usize = 1 << 20;

/// One replica of a document: a root of named fields, each a typed container.
///
/// Local edits go through a [`Transaction`]; remote edits arrive as updates through
/// [`Doc::apply_update`]. See the crate docs for an example.
#[derive(Clone)]
pub struct Doc {
    pub(crate) replica: ReplicaId,
    /// This replica's index in the log's replica table.
    pub(crate) me: u32,
    pub(crate) log: OpLog,
    /// Merge rules by name: the built-ins and those added by the application.
    pub(crate) rules: HashMap<Arc<str>, Arc<dyn MergeRule>>,
    /// The field states at the current version.
    pub(crate) branch: Branch,
    pub(crate) pending: Vec<WireRun>,
    /// (replica, seq, len) of every waiting run, to skip exact copies cheaply.
    pub(crate) pending_keys: HashSet<(ReplicaId, u64, u32)>,
    pub(crate) pending_ops: usize,
    pub(crate) pending_limit: usize,
    /// The field the last `field_id` call named.
    pub(crate) last_field: u32,
    pub(crate) observers: Observers,
    /// What the current transaction or apply touched, while observed.
    pub(crate) recorder: Option<Box<Recorder>>,
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

impl fmt::Debug for Doc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Doc")
            .field("replica", &self.replica)
            .field("version", &self.log.version)
            .field(
                "fields",
                &self
                    .log
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
            rules: builtin_rules(),
            branch: Branch::default(),
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
        self.log
            .fields
            .iter()
            .filter(|f| f.parent == ROOT)
            .map(|f| (&*f.name, &f.kind))
    }

    /// The full state as one update.
    pub fn encode(&self) -> Vec<u8> {
        self.encode_since(&VersionVector::new())
    }

    /// The operations a replica at version `since` lacks, as one update, in causal order.
    pub fn encode_since(&self, since: &VersionVector) -> Vec<u8> {
        let runs = self.log.runs_since(since);
        encoding::encode_runs(&runs, &self.log.changes_for(&runs), true)
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
        self.log
            .fields
            .get(self.last_field as usize)
            .is_some_and(|f| {
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
        if self.log.fields.len() <= 8 {
            self.log
                .fields
                .iter()
                .position(|f| f.is(parent, name, kind))
                .map(|f| f as u32)
        } else {
            self.log
                .field_index
                .get(&(parent, name_hash(name)))?
                .iter()
                .copied()
                .find(|&f| self.log.fields[f as usize].is(parent, name, kind))
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
            parent: (parent != ROOT).then(|| self.log.fields[parent as usize].key.clone()),
            name: name.clone(),
            kind: kind.clone(),
        });
        let f = self.log.fields.len() as u32;
        self.branch.bodies.push(Body::new(&kind));
        self.branch.first.push(None);
        self.log.fields.push(Field {
            parent,
            name: name.clone(),
            kind,
            key,
        });
        self.log
            .field_index
            .entry((parent, name_hash(&name)))
            .or_default()
            .push(f);
        f
    }

    /// The field that `key` names, if it exists here.
    pub(crate) fn find_key(&self, key: &Arc<FieldKey>) -> Option<u32> {
        // Runs of one update share their field's key, which the field adopts.
        if let Some(f) = self.log.fields.get(self.last_field as usize) {
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
    pub(crate) fn field_of_key(&mut self, key: &Arc<FieldKey>) -> u32 {
        if let Some(f) = self.log.fields.get(self.last_field as usize) {
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
        self.log.fields[f as usize].key = key.clone();
        f
    }

    /// How deep field `f` is nested (root fields: 0).
    pub(crate) fn depth(&self, mut f: u32) -> usize {
        let mut d = 0;
        while self.log.fields[f as usize].parent != ROOT {
            f = self.log.fields[f as usize].parent;
            d += 1;
        }
        d
    }

    /// Records that field `f` has an op stamped (`lamport`, `replica`).
    /// Notes an op of field `f` (at `lv`) for the field's first op.
    pub(crate) fn touch(&mut self, f: u32, lamport: u64, replica: ReplicaId, lv: Lv) {
        let first = &mut self.branch.first[f as usize];
        if first.is_none_or(|(l, r, _)| (lamport, replica) < (l, r)) {
            *first = Some((lamport, replica, lv));
        }
    }

    pub(crate) fn ensure_capacity(&self, ops: usize, bytes: usize) -> bool {
        u64::from(self.log.next_lv()) + ops as u64 <= MAX_OPS
            && self.log.content.len() as u64 + bytes as u64 <= u64::from(u32::MAX)
    }

    // ------------------------------------------------------------ applying updates
}

/// The built-in merge rules by name.
fn builtin_rules() -> HashMap<Arc<str>, Arc<dyn MergeRule>> {
    ["max", "min", "union"]
        .into_iter()
        .filter_map(|n| Some((Arc::from(n), crate::merge::builtin(n)?)))
        .collect()
}

/// `a == b`, cheaper for the kinds without a rule.
#[inline]
pub(crate) fn same_kind(a: &Kind, b: &Kind) -> bool {
    match (a, b) {
        (Kind::Register(x), Kind::Register(y)) => x == y,
        _ => std::mem::discriminant(a) == std::mem::discriminant(b),
    }
}

/// A fixed hash of a field name, for the field index.
pub(crate) fn name_hash(name: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    name.hash(&mut h);
    h.finish()
}

pub(crate) type Callback = Box<dyn FnMut(&Doc, &Event) + Send>;

/// The observers of a document. A clone of a document has none.
#[derive(Default)]
pub(crate) struct Observers {
    pub(crate) next: u64,
    pub(crate) list: Vec<(u64, TextUnit, Callback)>,
}

impl Clone for Observers {
    fn clone(&self) -> Self {
        Observers::default()
    }
}

impl fmt::Debug for Observers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} observers", self.list.len())
    }
}

impl Observers {
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
}
