use super::*;

const SEQ: &str = r#"{
    "startContent": "ab",
    "endContent": "xaYc",
    "txns": [
        { "time": "2021-01-01T00:00:00Z", "patches": [[2, 0, "c"], [0, 0, "x"]] },
        { "time": "2021-01-01T00:00:01Z", "patches": [[2, 1, "Y"]] }
    ]
}"#;

/// Two agents: 0 types "hello", 1 (concurrently) types "world" into the empty
/// document, then 0, having merged both, appends "!" after everything.
const CONC: &str = r#"{
    "kind": "concurrent",
    "endContent": "helloworld!",
    "numAgents": 2,
    "txns": [
        { "parents": [], "agent": 0, "numChildren": 1, "time": "", "patches": [[0, 0, "hello"]] },
        { "parents": [], "agent": 1, "numChildren": 1, "time": "", "patches": [[0, 0, "world"]] },
        { "parents": [0, 1], "agent": 0, "numChildren": 1, "time": "", "patches": [[10, 0, "!"]] },
        { "parents": [2], "agent": 1, "numChildren": 0, "time": "", "patches": [[0, 0, ""]] }
    ]
}"#;

#[test]
fn parses_sequential() {
    let trace = Trace::from_json(SEQ).unwrap();
    let Trace::Sequential { start, end, txns } = &trace else {
        panic!("not sequential")
    };
    assert_eq!(start, "ab");
    assert_eq!(end, "xaYc");
    assert_eq!(txns.len(), 2);
    assert_eq!(
        txns[0].patches[0],
        Patch {
            pos: 2,
            del: 0,
            ins: "c".into()
        }
    );
    assert_eq!(
        txns[1].patches[0],
        Patch {
            pos: 2,
            del: 1,
            ins: "Y".into()
        }
    );
    assert_eq!(trace.num_patches(), 3);
    assert_eq!(trace.kind_name(), "sequential");
    assert_eq!(trace.end_content(), "xaYc");
}

#[test]
fn parses_concurrent() {
    let trace = Trace::from_json(CONC).unwrap();
    let Trace::Concurrent {
        end,
        num_agents,
        txns,
    } = &trace
    else {
        panic!("not concurrent")
    };
    assert_eq!(end, "helloworld!");
    assert_eq!(*num_agents, 2);
    assert_eq!(txns[2].parents, vec![0, 1]);
    assert_eq!(txns[1].agent, 1);
    assert_eq!(trace.num_patches(), 4);
    assert_eq!(trace.kind_name(), "concurrent");
}

#[test]
fn rejects_bad_traces() {
    // Out-of-range delete.
    let bad = r#"{ "endContent": "", "txns": [ { "patches": [[0, 1, ""]] } ] }"#;
    assert!(
        Trace::from_json(bad)
            .unwrap_err()
            .to_string()
            .contains("out of range")
    );
    // A parent that is not earlier.
    let bad = r#"{ "kind": "concurrent", "endContent": "", "numAgents": 1,
                   "txns": [ { "parents": [0], "agent": 0, "patches": [] } ] }"#;
    assert!(format!("{:#}", Trace::from_json(bad).unwrap_err()).contains("not an earlier"));
    // An agent out of range.
    let bad = r#"{ "kind": "concurrent", "endContent": "", "numAgents": 1,
                   "txns": [ { "parents": [], "agent": 1, "patches": [] } ] }"#;
    assert!(format!("{:#}", Trace::from_json(bad).unwrap_err()).contains("agent 1"));
    // Not a trace at all.
    assert!(Trace::from_json("[1, 2]").is_err());
    assert!(Trace::from_json(r#"{ "kind": "weird", "endContent": "", "txns": [] }"#).is_err());
}

#[test]
fn schedules_missing_ancestors() {
    let Trace::Concurrent {
        num_agents, txns, ..
    } = Trace::from_json(CONC).unwrap()
    else {
        unreachable!()
    };
    let plan = schedule(num_agents, &txns).unwrap();
    assert_eq!(plan.before, vec![vec![], vec![], vec![1], vec![0, 2]]);
}

#[test]
fn rejects_agent_forks() {
    // Agent 0's second transaction does not descend from its first.
    let txns = vec![
        ConcTxn {
            parents: vec![],
            agent: 0,
            patches: vec![],
        },
        ConcTxn {
            parents: vec![],
            agent: 0,
            patches: vec![],
        },
    ];
    assert!(
        schedule(1, &txns)
            .unwrap_err()
            .to_string()
            .contains("chain")
    );
}

#[test]
fn mismatch_names_position() {
    assert_eq!(describe_mismatch("abc", "abc"), None);
    let msg = describe_mismatch("abcd", "abXd").unwrap();
    assert!(msg.contains("at char 2"), "{msg}");
    assert!(msg.contains("expected 4 chars, got 4"), "{msg}");
}

#[test]
fn trace_names() {
    assert_eq!(trace_name(Path::new("/x/seph-blog1.json.gz")), "seph-blog1");
    assert_eq!(trace_name(Path::new("a.json")), "a");
}

#[test]
fn replays_sequential() {
    let Trace::Sequential { start, end, txns } = Trace::from_json(SEQ).unwrap() else {
        unreachable!()
    };
    let doc = replay_sequential(&start, &txns).unwrap();
    assert_eq!(doc.text(FIELD).to_string(), end);
    doc.check().unwrap();
}

#[test]
fn replays_concurrent() {
    let trace = Trace::from_json(CONC).unwrap();
    let Trace::Concurrent {
        num_agents,
        txns,
        end,
    } = &trace
    else {
        unreachable!()
    };
    let result = replay_concurrent_replicas(*num_agents, txns).unwrap();
    assert_eq!(result.merged.text(FIELD).to_string(), *end);
    // Agent 1 merged everything before its last transaction.
    assert_eq!(result.agents[1].text(FIELD).to_string(), *end);
    result.merged.check().unwrap();
    assert_eq!(replay(&trace).unwrap().text(FIELD).to_string(), *end);
}

#[test]
fn default_traces_are_json_gz() {
    for path in default_traces() {
        assert!(path.to_string_lossy().ends_with(".json.gz"));
    }
}
