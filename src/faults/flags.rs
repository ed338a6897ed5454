//! flagd's flag-definition format (the OpenTelemetry demo's `demo.flagd.json`), the subset the fault
//! flags need, and its evaluation, shaped as OpenFeature's (a value, the variant, the reason).
//!
//! A file is `{"flags": {"<key>": {"state", "variants", "defaultVariant", "targeting",
//! "metadata"}}}` (flagd's model, flagd `core/pkg/model/flag.go`); `$schema`, `metadata` (where a
//! flag's description goes) and keys flagd does not define are accepted and ignored, as flagd in Go
//! ignores them (it decodes the file into that model after a schema check that only warns:
//! `core/pkg/evaluator/json.go`, `configToFlagDefinition`). Targeting is flagd's JSON Logic, of which
//! this evaluates `if`, `==`, `!=`, `in`, `and`, `or`, `!`, `var` and flagd's `fractional`; any other
//! operator makes the file invalid (reported, the last good flags stay in force) rather than silently
//! off. The evaluation context of a request is its route template (`route`), its method (`method`)
//! and a random `targetingKey`: a `fractional` split without a bucketing expression is a per-request
//! rate. (With one, e.g. `{"var": "route"}`, the value's text is hashed with murmur3 as flagd does,
//! though not over flagd's CBOR encoding of it: the same key may land in another bucket than flagd's.)
//! Each flag mixes its own key into the request's, as flagd hashes the flag's key with the targeting
//! key, so that two splits of one route are independent (the 5% of one is not inside the 10% of the
//! other).

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

/// A flag file: the flags by key.
#[derive(Debug, Deserialize)]
pub struct FlagFile {
    pub flags: BTreeMap<String, FlagDefinition>,
    #[serde(rename = "$schema", default)]
    pub schema: Option<String>,
    /// flagd's shared targeting rules (`$ref`): not supported, refused if present.
    #[serde(rename = "$evaluators", default)]
    pub evaluators: Option<Value>,
}

/// One flag as written in the file. Other keys are ignored, as flagd in Go ignores them (flagd's
/// Python evaluator refuses them: the project's own file keeps to flagd's model).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FlagDefinition {
    pub state: State,
    pub variants: BTreeMap<String, Value>,
    pub default_variant: String,
    #[serde(default)]
    pub targeting: Option<Value>,
    /// flagd's flag metadata (`local/flags/flags.json` keeps each flag's description there); unused.
    #[serde(default)]
    pub metadata: Option<Value>,
}

/// A flag's `state`: a disabled flag resolves to the caller's default (off).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum State {
    #[serde(rename = "ENABLED")]
    Enabled,
    #[serde(rename = "DISABLED")]
    Disabled,
}

/// Why a flag resolved to its value (OpenFeature's reasons).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// No targeting: the default variant.
    Static,
    /// Targeting chose the variant.
    TargetingMatch,
    /// Targeting returned nothing (null): the default variant.
    Default,
}

/// A flag's resolution: the variant's value, its name, why.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Resolution<'a> {
    pub value: &'a Value,
    pub variant: &'a str,
    pub reason: Reason,
}

/// What a request offers targeting (OpenFeature's evaluation context).
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// The route template (`/api/trace`), empty when no route matched.
    pub route: &'a str,
    pub method: &'a str,
    /// Per request, random: what a `fractional` without a bucketing expression buckets by.
    pub targeting_key: u64,
}

/// An enabled flag, its targeting compiled.
#[derive(Debug)]
pub struct Flag {
    pub key: String,
    /// The flag's key, hashed: mixed into the request's targeting key (see [`Flag::resolve`]).
    key_seed: u64,
    variants: BTreeMap<String, Value>,
    default_variant: String,
    rule: Option<Rule>,
}

impl Flag {
    /// Compiles a definition; `None` for a disabled flag (it resolves to off, as the caller's default).
    pub fn compile(key: &str, definition: FlagDefinition) -> Result<Option<Self>, String> {
        if !definition
            .variants
            .contains_key(&definition.default_variant)
        {
            return Err(format!(
                "flag {key}: defaultVariant {:?} is not one of its variants",
                definition.default_variant
            ));
        }
        let rule = match definition.targeting {
            None => None,
            Some(Value::Object(map)) if map.is_empty() => None,
            Some(targeting) => {
                Some(Rule::compile(&targeting).map_err(|e| format!("flag {key}: {e}"))?)
            }
        };
        if definition.state == State::Disabled {
            return Ok(None);
        }
        Ok(Some(Self {
            key: key.to_owned(),
            key_seed: u64::from(murmur3_x86_32(key.as_bytes(), 0)) << 32,
            variants: definition.variants,
            default_variant: definition.default_variant,
            rule,
        }))
    }

    /// The flag's value for a request. `None` when targeting named a variant the flag does not have
    /// (flagd answers an error, and the caller keeps its default: off).
    pub fn resolve(&self, context: &Context<'_>) -> Option<Resolution<'_>> {
        let (variant, reason) = match &self.rule {
            None => (self.default_variant.as_str(), Reason::Static),
            Some(rule) => match rule.eval(&Context {
                // The flag's own key, from the request's and the flag's (flagd hashes the two
                // together): each flag's split is independent of the others'.
                targeting_key: super::next_random(context.targeting_key ^ self.key_seed),
                ..*context
            }) {
                Val::Str(name) => (name, Reason::TargetingMatch),
                Val::Bool(b) => (if b { "true" } else { "false" }, Reason::TargetingMatch),
                Val::Null => (self.default_variant.as_str(), Reason::Default),
                _ => return None,
            },
        };
        let (variant, value) = self.variants.get_key_value(variant)?;
        Some(Resolution {
            value,
            variant,
            reason,
        })
    }
}

/// Compiled JSON Logic.
#[derive(Debug, Clone)]
enum Rule {
    Literal(Value),
    Var(String),
    /// `[cond, then, cond, then, ..., else]`
    If(Vec<Rule>),
    Eq(Box<Rule>, Box<Rule>, bool),
    In(Box<Rule>, Box<Rule>),
    And(Vec<Rule>),
    Or(Vec<Rule>),
    Not(Box<Rule>),
    Array(Vec<Rule>),
    Fractional {
        bucket_by: Option<Box<Rule>>,
        buckets: Vec<(String, u64)>,
        total: u64,
    },
}

/// A value during evaluation, borrowed from the rule or the context: no allocation.
#[derive(Debug, Clone, Copy)]
enum Val<'a> {
    Null,
    Bool(bool),
    Num(f64),
    Str(&'a str),
    Arr(&'a [Rule]),
}

impl Val<'_> {
    fn truthy(self) -> bool {
        match self {
            Val::Null => false,
            Val::Bool(b) => b,
            Val::Num(n) => n != 0.0,
            Val::Str(s) => !s.is_empty(),
            Val::Arr(a) => !a.is_empty(),
        }
    }

    fn loosely_equals(self, other: Val<'_>) -> bool {
        match (self, other) {
            (Val::Null, Val::Null) => true,
            (Val::Bool(a), Val::Bool(b)) => a == b,
            (Val::Num(a), Val::Num(b)) => a == b,
            (Val::Str(a), Val::Str(b)) => a == b,
            (Val::Num(a), Val::Str(b)) | (Val::Str(b), Val::Num(a)) => b.parse() == Ok(a),
            _ => false,
        }
    }
}

impl Rule {
    fn compile(value: &Value) -> Result<Rule, String> {
        let object = match value {
            Value::Array(items) => {
                return Ok(Rule::Array(
                    items.iter().map(Rule::compile).collect::<Result<_, _>>()?,
                ));
            }
            Value::Object(object) => object,
            literal => return Ok(Rule::Literal(literal.clone())),
        };
        if object.len() != 1 {
            return Err(format!(
                "a JSON Logic operation has exactly one operator, found {}",
                Value::Object(object.clone())
            ));
        }
        let (operator, arguments) = object.iter().next().expect("one entry");
        let args: Vec<Rule> = match arguments {
            Value::Array(items) => items.iter().map(Rule::compile).collect::<Result<_, _>>()?,
            single => vec![Rule::compile(single)?],
        };
        let count = args.len();
        let arity = |n: usize| {
            if count == n {
                Ok(())
            } else {
                Err(format!("{operator:?} takes {n} arguments, found {count}"))
            }
        };
        let mut args = args.into_iter();
        let mut next = || Box::new(args.next().expect("arity checked"));
        Ok(match operator.as_str() {
            "var" => match arguments {
                Value::String(name) => Rule::Var(name.clone()),
                Value::Array(items) if items.len() == 1 && items[0].is_string() => {
                    Rule::Var(items[0].as_str().expect("a string").to_owned())
                }
                other => return Err(format!("\"var\" takes a name, found {other}")),
            },
            "if" | "?:" => {
                if arguments.as_array().is_none_or(|a| a.len() < 2) {
                    return Err("\"if\" takes [condition, then, ..., else]".into());
                }
                Rule::If(args.collect())
            }
            "==" | "===" => {
                arity(2)?;
                Rule::Eq(next(), next(), true)
            }
            "!=" | "!==" => {
                arity(2)?;
                Rule::Eq(next(), next(), false)
            }
            "in" => {
                arity(2)?;
                Rule::In(next(), next())
            }
            "and" => Rule::And(args.collect()),
            "or" => Rule::Or(args.collect()),
            "!" => {
                arity(1)?;
                Rule::Not(next())
            }
            "fractional" => compile_fractional(args.collect())?,
            other => {
                return Err(format!(
                    "targeting operator {other:?} is not supported here (supported: if, ==, !=, in, and, or, !, var, fractional)"
                ));
            }
        })
    }

    fn eval<'a>(&'a self, context: &Context<'a>) -> Val<'a> {
        match self {
            Rule::Literal(value) => literal(value),
            Rule::Var(name) => match name.as_str() {
                "route" => Val::Str(context.route),
                "method" => Val::Str(context.method),
                _ => Val::Null,
            },
            Rule::If(parts) => {
                let mut parts = parts.chunks(2);
                for pair in parts.by_ref() {
                    match pair {
                        [condition, then] => {
                            if condition.eval(context).truthy() {
                                return then.eval(context);
                            }
                        }
                        [otherwise] => return otherwise.eval(context),
                        _ => unreachable!("chunks of 2"),
                    }
                }
                Val::Null
            }
            Rule::Eq(a, b, equal) => {
                Val::Bool(a.eval(context).loosely_equals(b.eval(context)) == *equal)
            }
            Rule::In(needle, haystack) => {
                let needle = needle.eval(context);
                Val::Bool(match haystack.eval(context) {
                    Val::Arr(items) => items
                        .iter()
                        .any(|item| item.eval(context).loosely_equals(needle)),
                    Val::Str(text) => matches!(needle, Val::Str(n) if text.contains(n)),
                    _ => false,
                })
            }
            Rule::And(items) => {
                let mut last = Val::Bool(true);
                for item in items {
                    last = item.eval(context);
                    if !last.truthy() {
                        return last;
                    }
                }
                last
            }
            Rule::Or(items) => {
                let mut last = Val::Bool(false);
                for item in items {
                    last = item.eval(context);
                    if last.truthy() {
                        return last;
                    }
                }
                last
            }
            Rule::Not(item) => Val::Bool(!item.eval(context).truthy()),
            Rule::Array(items) => Val::Arr(items),
            Rule::Fractional {
                bucket_by,
                buckets,
                total,
            } => {
                let bucket = match bucket_by {
                    // A random targeting key: a uniform bucket, without hashing its text.
                    None => (context.targeting_key >> 32).wrapping_mul(*total) >> 32,
                    Some(rule) => {
                        let hash = match rule.eval(context) {
                            Val::Str(text) => murmur3_x86_32(text.as_bytes(), 0),
                            Val::Num(n) => murmur3_x86_32(n.to_string().as_bytes(), 0),
                            Val::Bool(b) => murmur3_x86_32(if b { b"true" } else { b"false" }, 0),
                            _ => return Val::Null,
                        };
                        (u64::from(hash) * total) >> 32
                    }
                };
                let mut end = 0;
                for (variant, weight) in buckets {
                    end += weight;
                    if bucket < end {
                        return Val::Str(variant);
                    }
                }
                Val::Null
            }
        }
    }
}

fn literal(value: &Value) -> Val<'_> {
    match value {
        Value::Null => Val::Null,
        Value::Bool(b) => Val::Bool(*b),
        Value::Number(n) => Val::Num(n.as_f64().unwrap_or(f64::NAN)),
        Value::String(s) => Val::Str(s),
        // Objects are operations, compiled; arrays are compiled as `Rule::Array`.
        Value::Array(_) | Value::Object(_) => Val::Null,
    }
}

/// `{"fractional": [bucketBy?, [variant, weight], ...]}`: weights are relative (flagd's semantics).
fn compile_fractional(args: Vec<Rule>) -> Result<Rule, String> {
    let mut args = args.into_iter().peekable();
    let bucket_by = match args.peek() {
        Some(Rule::Array(_)) | None => None,
        Some(_) => args.next().map(Box::new),
    };
    let mut buckets = Vec::new();
    let mut total = 0u64;
    for bucket in args {
        let Rule::Array(parts) = bucket else {
            return Err("\"fractional\" buckets are [variant, weight] pairs".into());
        };
        let (variant, weight) = match parts.as_slice() {
            [Rule::Literal(Value::String(variant))] => (variant.clone(), 1),
            [
                Rule::Literal(Value::String(variant)),
                Rule::Literal(Value::Number(weight)),
            ] => {
                let weight = weight
                    .as_u64()
                    .filter(|w| *w <= i32::MAX as u64)
                    .ok_or_else(|| {
                        format!("\"fractional\" weight {weight} is not a whole number")
                    })?;
                (variant.clone(), weight)
            }
            _ => return Err("\"fractional\" buckets are [variant, weight] pairs".into()),
        };
        total += weight;
        buckets.push((variant, weight));
    }
    if total == 0 || total > i32::MAX as u64 {
        return Err("\"fractional\" weights must add up to more than 0".into());
    }
    Ok(Rule::Fractional {
        bucket_by,
        buckets,
        total,
    })
}

/// MurmurHash3, x86 32-bit: flagd's bucketing hash.
fn murmur3_x86_32(data: &[u8], seed: u32) -> u32 {
    const C1: u32 = 0xcc9e_2d51;
    const C2: u32 = 0x1b87_3593;
    let mut h = seed;
    let mut blocks = data.chunks_exact(4);
    for block in blocks.by_ref() {
        let mut k = u32::from_le_bytes(block.try_into().expect("4 bytes"));
        k = k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
        h ^= k;
        h = h.rotate_left(13).wrapping_mul(5).wrapping_add(0xe654_6b64);
    }
    let tail = blocks.remainder();
    if !tail.is_empty() {
        let mut k = 0u32;
        for (i, byte) in tail.iter().enumerate() {
            k |= u32::from(*byte) << (8 * i);
        }
        h ^= k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
    }
    h ^= data.len() as u32;
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

#[cfg(test)]
mod tests;
