//! Merge rules: the conflict rules of merge registers.
//!
//! A merge register holds the merge of every value ever written to it, by any replica.
//! Replicas receive those writes in different orders, some more than once (a peer
//! resends, two peers relay the same update), and merge them as they arrive. They
//! still agree because a rule must be a join semilattice:
//!
//! - **commutative**, `merge(a, b) == merge(b, a)`: the order in which two writes
//!   arrive does not matter;
//! - **associative**, `merge(merge(a, b), c) == merge(a, merge(b, c))`: neither does
//!   how they were grouped, so a replica may fold writes in one by one or receive a
//!   peer's already-merged state;
//! - **idempotent**, `merge(a, a) == a`: receiving a write again changes nothing.
//!
//! Together they make the result a function of the *set* of values written, not of
//! the sequence in which a replica saw them: associativity and commutativity let any
//! fold of a sequence be rearranged into any other order, and idempotence lets
//! repeated elements be dropped. Two replicas that have seen the same writes therefore
//! hold the same value, with no coordination and no record of delivery order.
//!
//! The laws need only hold over a rule's *domain*; [`MergeRule::canonical`] brings
//! each written value into it first (the union rule holds sorted sets, so a written
//! scalar becomes a one-element set).

use std::fmt;
use std::sync::Arc;

use crate::Value;

/// A conflict rule for merge registers: how any two values combine into one.
///
/// Implementations must be deterministic (no clock, no randomness, no state that
/// differs between replicas) and make [`merge`](MergeRule::merge) commutative,
/// associative and idempotent over canonical values, or replicas will diverge. The
/// rule's [`name`](MergeRule::name) is stored in the document, so every replica must
/// know a rule by the same name with the same behaviour.
pub trait MergeRule: Send + Sync + fmt::Debug {
    /// The rule's name, stored in the document (the register's type names it), e.g.
    /// `"max"`.
    fn name(&self) -> &str;

    /// Brings a written value into the rule's domain (e.g. union turns a scalar into a
    /// one-element set). Default: identity.
    fn canonical(&self, v: Value) -> Value {
        v
    }

    /// Merges two canonical values. Must be commutative, associative and idempotent.
    fn merge(&self, a: &Value, b: &Value) -> Value;
}

/// The greatest value wins, by [`Value`]'s total order (so any `Array` beats any
/// `Str`, and any `Float` beats any `Int`: compare like with like).
#[derive(Debug, Clone, Copy, Default)]
pub struct Max;

impl MergeRule for Max {
    fn name(&self) -> &str {
        "max"
    }

    fn merge(&self, a: &Value, b: &Value) -> Value {
        a.max(b).clone()
    }
}

/// The least value wins, by [`Value`]'s total order (so `Null` beats everything).
#[derive(Debug, Clone, Copy, Default)]
pub struct Min;

impl MergeRule for Min {
    fn name(&self) -> &str {
        "min"
    }

    fn merge(&self, a: &Value, b: &Value) -> Value {
        a.min(b).clone()
    }
}

/// A grow-only set: the register holds every element ever added, as an `Array` sorted
/// by [`Value`]'s order without duplicates.
///
/// Writing an `Array` adds each of its elements; writing any other value adds that
/// value. Elements are never removed (removal needs tombstones, which a plain
/// semilattice over values cannot express).
#[derive(Debug, Clone, Copy, Default)]
pub struct Union;

impl MergeRule for Union {
    fn name(&self) -> &str {
        "union"
    }

    fn canonical(&self, v: Value) -> Value {
        match v {
            Value::Array(mut items) => {
                items.sort_unstable();
                items.dedup();
                Value::Array(items)
            }
            other => Value::Array(vec![other]),
        }
    }

    fn merge(&self, a: &Value, b: &Value) -> Value {
        let a = canonical_items(a);
        let b = canonical_items(b);
        let (mut i, mut j) = (0, 0);
        let mut out = Vec::with_capacity(a.len().max(b.len()));
        while let (Some(x), Some(y)) = (a.get(i), b.get(j)) {
            match x.cmp(y) {
                std::cmp::Ordering::Less => {
                    out.push(x.clone());
                    i += 1;
                }
                std::cmp::Ordering::Greater => {
                    out.push(y.clone());
                    j += 1;
                }
                std::cmp::Ordering::Equal => {
                    out.push(x.clone());
                    i += 1;
                    j += 1;
                }
            }
        }
        out.extend_from_slice(a.get(i..).unwrap_or_default());
        out.extend_from_slice(b.get(j..).unwrap_or_default());
        Value::Array(out)
    }
}

/// The elements of `v` as the union rule holds them (sorted, no duplicates), borrowed
/// when `v` already is canonical, as it is on every path but a buggy caller's.
fn canonical_items(v: &Value) -> std::borrow::Cow<'_, [Value]> {
    match v {
        Value::Array(items) if items.windows(2).all(|w| w[0] < w[1]) => {
            std::borrow::Cow::Borrowed(items)
        }
        _ => match Union.canonical(v.clone()) {
            Value::Array(items) => std::borrow::Cow::Owned(items),
            // `canonical` always returns an array.
            other => std::borrow::Cow::Owned(vec![other]),
        },
    }
}

/// The built-in rule called `name`: `"max"`, `"min"` or `"union"`.
pub(crate) fn builtin(name: &str) -> Option<Arc<dyn MergeRule>> {
    match name {
        "max" => Some(Arc::new(Max)),
        "min" => Some(Arc::new(Min)),
        "union" => Some(Arc::new(Union)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::arb_value;
    use proptest::prelude::*;

    fn rules() -> [&'static dyn MergeRule; 3] {
        [&Max, &Min, &Union]
    }

    fn fold(rule: &dyn MergeRule, values: &[Value]) -> Option<Value> {
        values
            .iter()
            .cloned()
            .map(|v| rule.canonical(v))
            .reduce(|acc, v| rule.merge(&acc, &v))
    }

    /// Values, and the same values shuffled with some of them delivered twice.
    fn deliveries() -> impl Strategy<Value = (Vec<Value>, Vec<Value>)> {
        proptest::collection::vec(arb_value(), 0..8).prop_flat_map(|values| {
            let n = values.len();
            let dups = proptest::collection::vec(any::<prop::sample::Index>(), 0..3);
            (Just(values.clone()), Just(values), dups).prop_flat_map(move |(orig, mut v, d)| {
                if n > 0 {
                    let again: Vec<Value> = d.iter().map(|i| v[i.index(n)].clone()).collect();
                    v.extend(again);
                }
                (Just(orig), Just(v).prop_shuffle())
            })
        })
    }

    #[test]
    fn builtins_by_name() {
        for rule in rules() {
            assert_eq!(builtin(rule.name()).unwrap().name(), rule.name());
        }
        assert!(builtin("sum").is_none());
        assert!(builtin("MAX").is_none());
    }

    #[test]
    fn examples() {
        let (a, b) = (Value::Int(3), Value::Int(7));
        assert_eq!(Max.merge(&a, &b), b);
        assert_eq!(Min.merge(&a, &b), a);
        assert_eq!(Max.canonical(a.clone()), a);
        assert_eq!(Union.canonical(a.clone()), Value::Array(vec![a.clone()]));
        assert_eq!(
            Union.canonical(Value::Array(vec![b.clone(), a.clone(), b.clone()])),
            Value::Array(vec![a.clone(), b.clone()])
        );
        assert_eq!(
            Union.merge(
                &Value::Array(vec![Value::Int(1), Value::Int(5)]),
                &Value::Array(vec![Value::Int(2), Value::Int(5), Value::Int(9)]),
            ),
            Value::Array(vec![
                Value::Int(1),
                Value::Int(2),
                Value::Int(5),
                Value::Int(9)
            ])
        );
        // Non-canonical input still gives a canonical set.
        assert_eq!(
            Union.merge(
                &Value::Int(4),
                &Value::Array(vec![b.clone(), a.clone(), b.clone()])
            ),
            Value::Array(vec![a.clone(), Value::Int(4), b.clone()])
        );
        // NaN is an ordinary element under the total order.
        let nan = Value::Float(f64::NAN);
        assert_eq!(Max.merge(&nan, &Value::Float(f64::INFINITY)), nan);
        assert_eq!(
            Union.merge(&nan, &nan),
            Value::Array(vec![Value::Float(f64::NAN)])
        );
    }

    proptest! {
        #[test]
        fn laws_hold(a in arb_value(), b in arb_value(), c in arb_value()) {
            for rule in rules() {
                let a = rule.canonical(a.clone());
                let b = rule.canonical(b.clone());
                let c = rule.canonical(c.clone());
                prop_assert_eq!(rule.merge(&a, &b), rule.merge(&b, &a), "{} commutes", rule.name());
                prop_assert_eq!(
                    rule.merge(&rule.merge(&a, &b), &c),
                    rule.merge(&a, &rule.merge(&b, &c)),
                    "{} associates", rule.name()
                );
                prop_assert_eq!(&rule.merge(&a, &a), &a, "{} is idempotent", rule.name());
            }
        }

        #[test]
        fn order_and_duplicates_do_not_matter((values, delivered) in deliveries()) {
            for rule in rules() {
                prop_assert_eq!(fold(rule, &values), fold(rule, &delivered), "{}", rule.name());
            }
        }

        #[test]
        fn canonical_is_idempotent(v in arb_value()) {
            for rule in rules() {
                let once = rule.canonical(v.clone());
                prop_assert_eq!(rule.canonical(once.clone()), once);
            }
        }

        #[test]
        fn union_canonicalizes_its_inputs(a in arb_value(), b in arb_value()) {
            let merged = Union.merge(&a, &b);
            prop_assert_eq!(Union.canonical(merged.clone()), merged.clone());
            prop_assert_eq!(
                merged,
                Union.merge(&Union.canonical(a), &Union.canonical(b))
            );
        }
    }
}
