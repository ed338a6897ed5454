use super::*;

fn flag(json: &str) -> Flag {
    let definition: FlagDefinition = serde_json::from_str(json).unwrap();
    Flag::compile("f", definition).unwrap().unwrap()
}

fn context(route: &'static str, key: u64) -> Context<'static> {
    Context {
        route,
        method: "GET",
        targeting_key: key,
    }
}

#[test]
fn murmur3_matches_flagd_engine() {
    // flagd-evaluation-engine 0.1.0, targeting/fractional.rs: bucket_for(b"flag-user", 100).
    let hash = murmur3_x86_32(b"flag-user", 0);
    assert_eq!(hash, 2_410_693_464);
    assert_eq!((u64::from(hash) * 100) >> 32, 56);
    assert_eq!(murmur3_x86_32(b"", 0), 0);
    // The published MurmurHash3_x86_32 vectors: whole blocks, and tails of 1, 2 and 3 bytes.
    assert_eq!(murmur3_x86_32(b"test", 0), 0xba6b_d213);
    assert_eq!(murmur3_x86_32(b"ab", 0), 0x9bbf_d75f);
    assert_eq!(
        murmur3_x86_32(b"The quick brown fox jumps over the lazy dog", 0x9747_b28c),
        0x2fa8_26cd
    );
    assert_eq!(murmur3_x86_32(b"Hello, world!", 0x9747_b28c), 0x2488_4cba);
}

#[test]
fn static_flag_resolves_its_default_variant() {
    let f =
        flag(r#"{"state": "ENABLED", "variants": {"on": 250, "off": 0}, "defaultVariant": "on"}"#);
    let r = f.resolve(&context("/", 1)).unwrap();
    assert_eq!(
        (r.value, r.variant, r.reason),
        (&Value::from(250), "on", Reason::Static)
    );
}

/// Keys flagd's model does not define (a `description` beside `state`, newer flagd's `flagType`)
/// are ignored, as flagd in Go ignores them; `metadata` holds anything.
#[test]
fn keys_flagd_does_not_define_are_ignored() {
    let f = flag(
        r#"{"state": "ENABLED", "variants": {"on": 250, "off": 0}, "defaultVariant": "on",
            "description": "old style", "flagType": "integer", "source": "x",
            "metadata": {"description": "new style", "owner": "team", "version": 2}}"#,
    );
    assert_eq!(
        f.resolve(&context("/", 1)).unwrap().value,
        &Value::from(250)
    );
}

#[test]
fn disabled_flags_compile_to_nothing_and_bad_defaults_are_refused() {
    let definition: FlagDefinition = serde_json::from_str(
        r#"{"state": "DISABLED", "variants": {"on": true}, "defaultVariant": "on"}"#,
    )
    .unwrap();
    assert!(Flag::compile("f", definition).unwrap().is_none());
    let definition: FlagDefinition = serde_json::from_str(
        r#"{"state": "ENABLED", "variants": {"on": true}, "defaultVariant": "of"}"#,
    )
    .unwrap();
    assert!(
        Flag::compile("f", definition)
            .unwrap_err()
            .contains("defaultVariant")
    );
}

#[test]
fn route_targeting_and_unsupported_operators() {
    let f = flag(
        r#"{"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off",
            "targeting": {"if": [{"in": [{"var": "route"}, ["/api/trace", "/"]]}, "on", null]}}"#,
    );
    assert_eq!(f.resolve(&context("/api/trace", 1)).unwrap().variant, "on");
    assert_eq!(f.resolve(&context("/", 1)).unwrap().variant, "on");
    let r = f.resolve(&context("/api/apm", 1)).unwrap();
    assert_eq!((r.variant, r.reason), ("off", Reason::Default));
    let definition: FlagDefinition = serde_json::from_str(
        r#"{"state": "ENABLED", "variants": {"on": true}, "defaultVariant": "on",
            "targeting": {"sem_ver": [{"var": "v"}, ">=", "1.0.0"]}}"#,
    )
    .unwrap();
    assert!(
        Flag::compile("f", definition)
            .unwrap_err()
            .contains("sem_ver")
    );
}

#[test]
fn fractional_splits_random_keys_at_the_weights() {
    let f = flag(
        r#"{"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off",
            "targeting": {"fractional": [["on", 1], ["off", 3]]}}"#,
    );
    let n = 20_000;
    let on = (0..n)
        .filter(|i| {
            let key = super::super::next_random(*i);
            f.resolve(&context("/", key)).unwrap().variant == "on"
        })
        .count();
    // 25% of 20,000: 5,000, standard deviation 61; 5 of them either side.
    assert!((4_700..=5_300).contains(&on), "{on}");
}

#[test]
fn fractional_with_a_bucketing_expression_is_sticky() {
    let f = flag(
        r#"{"state": "ENABLED", "variants": {"a": 1, "b": 2}, "defaultVariant": "a",
            "targeting": {"fractional": [{"var": "route"}, ["a", 50], ["b", 50]]}}"#,
    );
    let first = f.resolve(&context("/api/trace", 1)).unwrap().variant;
    for key in 2..100 {
        assert_eq!(
            f.resolve(&context("/api/trace", key)).unwrap().variant,
            first
        );
    }
}

/// The variant `targeting` picks for `route`/`GET`, on a flag whose variants are "t", "f",
/// "true", "false", "a", "b" (so a condition can be written `{"if": [cond, "t", "f"]}`).
fn pick(targeting: &str, route: &'static str) -> (String, Reason) {
    let f = flag(&format!(
        r#"{{"state": "ENABLED", "defaultVariant": "f", "targeting": {targeting},
            "variants": {{"t": 1, "f": 0, "true": 1, "false": 0, "a": 1, "b": 2}}}}"#
    ));
    let r = f.resolve(&context(route, 1)).unwrap();
    (r.variant.to_owned(), r.reason)
}

fn holds(condition: &str) -> bool {
    match pick(
        &format!(r#"{{"if": [{condition}, "t", "f"]}}"#),
        "/api/trace",
    )
    .0
    .as_str()
    {
        "t" => true,
        "f" => false,
        other => panic!("{other}"),
    }
}

#[test]
fn json_logic_truthiness_and_loose_equality_as_flagd() {
    for (condition, expected) in [
        ("0", false),
        ("1", true),
        (r#""""#, false),
        (r#""x""#, true),
        ("[]", false),
        ("[1]", true),
        ("null", false),
        (r#"{"==": [null, null]}"#, true),
        (r#"{"==": [true, true]}"#, true),
        (r#"{"==": [true, false]}"#, false),
        (r#"{"==": [1, 1]}"#, true),
        (r#"{"==": [1, 2]}"#, false),
        (r#"{"==": ["1", 1]}"#, true),
        (r#"{"==": [1, "1"]}"#, true),
        (r#"{"==": [1, "2"]}"#, false),
        (r#"{"==": ["a", "a"]}"#, true),
        (r#"{"!=": ["a", "b"]}"#, true),
        (r#"{"!": [0]}"#, true),
        (r#"{"!": ["x"]}"#, false),
        (r#"{"and": [1, 0]}"#, false),
        (r#"{"and": [1, "x"]}"#, true),
        (r#"{"or": [0, ""]}"#, false),
        (r#"{"or": [0, "x"]}"#, true),
        (r#"{"==": [{"var": "method"}, "GET"]}"#, true),
        (r#"{"==": [{"var": ["route"]}, "/api/trace"]}"#, true),
        (r#"{"in": ["api", {"var": "route"}]}"#, true),
        (r#"{"in": ["xyz", {"var": "route"}]}"#, false),
        (r#"{"if": [true, "t"]}"#, true),
    ] {
        assert_eq!(holds(condition), expected, "{condition}");
    }
    // A targeting that evaluates to a boolean picks the variant of that name.
    assert_eq!(
        pick(r#"{"==": [1, 1]}"#, "/"),
        ("true".to_owned(), Reason::TargetingMatch)
    );
    // An empty targeting object is no targeting: the default variant, statically.
    assert_eq!(pick("{}", "/"), ("f".to_owned(), Reason::Static));
}

#[test]
fn malformed_json_logic_is_refused() {
    for targeting in [
        r#"{"var": ["route", "method"]}"#,
        r#"{"var": [1]}"#,
        r#"{"if": ["t"]}"#,
        r#"{"fractional": [["a", 0]]}"#,
        r#"{"fractional": [["a", 2147483647], ["b", 1]]}"#,
    ] {
        let definition: FlagDefinition = serde_json::from_str(&format!(
            r#"{{"state": "ENABLED", "variants": {{"a": 1, "b": 2}}, "defaultVariant": "a",
                "targeting": {targeting}}}"#
        ))
        .unwrap();
        assert!(Flag::compile("f", definition).is_err(), "{targeting}");
    }
}

#[test]
fn fractional_buckets_as_flagd_engine() {
    // murmur3("flag-user") * 100 >> 32 is bucket 56 (flagd-evaluation-engine's vector): the
    // first 56 buckets are "a", so it lands on "b"; with 57 it lands on "a".
    let by_route = |weights: &str| {
        pick(
            &format!(r#"{{"fractional": [{{"var": "route"}}, {weights}]}}"#),
            "flag-user",
        )
    };
    assert_eq!(by_route(r#"["a", 56], ["b", 44]"#).0, "b");
    assert_eq!(by_route(r#"["a", 57], ["b", 43]"#).0, "a");
    // The largest total flagd allows, and buckets without a weight (1 each).
    assert_eq!(by_route(r#"["a", 2147483647]"#).0, "a");
    assert_eq!(by_route(r#"["a"], ["b"]"#).1, Reason::TargetingMatch);
    // Numbers and booleans bucket by their text, as flagd does.
    for (value, text) in [("5", "5"), ("true", "true"), ("false", "false")] {
        let expected = if (u64::from(murmur3_x86_32(text.as_bytes(), 0)) * 2) >> 32 == 0 {
            "a"
        } else {
            "b"
        };
        assert_eq!(
            pick(
                &format!(r#"{{"fractional": [{value}, ["a", 1], ["b", 1]]}}"#),
                "/"
            ),
            (expected.to_owned(), Reason::TargetingMatch),
            "{value}"
        );
    }
}
