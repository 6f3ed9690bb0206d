use chorus_doc::{Doc, MapValue, ReplicaId, Rule, Value};

fn sync(a: &mut Doc, b: &mut Doc) {
    let ab = a.encode_since(b.version());
    let ba = b.encode_since(a.version());
    b.apply_update(&ab).unwrap();
    a.apply_update(&ba).unwrap();
}

#[test]
fn smoke() {
    let mut a = Doc::new(ReplicaId::from_u128(1));
    let mut b = Doc::new(ReplicaId::from_u128(2));
    let mut tx = a.transact();
    tx.counter("n").add(5).unwrap();
    tx.register("title", Rule::Lww).set("A", 1000).unwrap();
    tx.register("status", Rule::MultiValue)
        .set("draft", 1000)
        .unwrap();
    tx.map("m").map("child").unwrap().set("x", 1).unwrap();
    tx.list("l").push("a").unwrap();
    tx.commit();
    let mut tx = b.transact();
    tx.counter("n").add(-2).unwrap();
    tx.register("title", Rule::Lww).set("B", 1000).unwrap();
    tx.register("status", Rule::MultiValue)
        .set("done", 1000)
        .unwrap();
    tx.map("m").map("child").unwrap().set("y", 2).unwrap();
    tx.list("l").push("b").unwrap();
    tx.commit();
    sync(&mut a, &mut b);
    a.check().unwrap();
    b.check().unwrap();
    assert_eq!(a.to_json(), b.to_json());
    assert_eq!(a.counter("n").value(), 3);
    assert_eq!(
        a.register("title", Rule::Lww).value(),
        Some(Value::from("B"))
    );
    assert_eq!(a.register("status", Rule::MultiValue).conflicts().len(), 2);
    let child = a.map("m").map("child");
    assert_eq!(child.len(), 2);
    assert_eq!(
        a.map("m").get("child"),
        Some(MapValue::Container(chorus_doc::Kind::Map))
    );
    assert_eq!(a.list("l").len(), 2);
    println!("{}", a.to_json());
    let c = Doc::decode(&a.encode(), ReplicaId::from_u128(3)).unwrap();
    c.check().unwrap();
    assert_eq!(c.to_json(), a.to_json());
    assert_eq!(c.encode(), a.encode());
    // resolve
    let mut tx = b.transact();
    tx.register("status", Rule::MultiValue)
        .set("done", 2000)
        .unwrap();
    tx.commit();
    sync(&mut a, &mut b);
    assert!(
        a.register("status", Rule::MultiValue)
            .conflicts()
            .is_empty()
    );
    assert_eq!(a.to_json(), b.to_json());
}
