//! A table's key schema, and every check of keys, items, updates and query
//! arguments against it, with the error texts every table backend answers.
//!
//! A backend gives its own representation of a key attribute's value (a
//! SQLite value, a DynamoDB `AttributeValue`) through [`KeyCodec`]; the rules
//! and messages are the same for all.

use serde_json::{Map, Number, Value};
use usher_registry::TableDef;

use crate::backend::{json_kind, Condition, TransactItem};
use crate::CapError;

/// How a backend stores a key attribute's value.
pub trait KeyCodec {
    /// One key attribute's value as the backend stores it.
    type Part;
    /// A non-empty string.
    fn text(s: &str) -> Self::Part;
    /// A number; `None` when the backend cannot hold it.
    fn number(n: &Number) -> Option<Self::Part>;
}

/// A key checked against the schema: its parts as the backend stores them
/// and the key attributes as JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct TableKey<P> {
    /// The partition key's value.
    pub partition: P,
    /// The sort key's value (`None` for tables without a sort key).
    pub sort: Option<P>,
    /// The key attributes as a JSON object.
    pub json: Value,
}

/// The key schema of one table, named as the caller named it.
#[derive(Debug, Clone, Copy)]
pub struct KeySchema<'a> {
    table: &'a str,
    partition_key: &'a str,
    sort_key: Option<&'a str>,
}

impl<'a> KeySchema<'a> {
    /// The schema of `table`, defined by `def`.
    pub fn new(table: &'a str, def: &'a TableDef) -> Self {
        Self {
            table,
            partition_key: &def.partition_key,
            sort_key: def.sort_key.as_deref(),
        }
    }

    /// The table's name.
    pub fn table(&self) -> &'a str {
        self.table
    }

    /// The partition key attribute.
    pub fn partition_key(&self) -> &'a str {
        self.partition_key
    }

    /// The sort key attribute, if the table has one.
    pub fn sort_key(&self) -> Option<&'a str> {
        self.sort_key
    }

    /// The key attributes, partition key first.
    pub fn key_attrs(&self) -> impl Iterator<Item = &'a str> {
        std::iter::once(self.partition_key).chain(self.sort_key)
    }

    /// The key attributes for messages: `` `PK`, `SK` ``.
    pub fn key_names(&self) -> String {
        match self.sort_key {
            Some(sk) => format!("`{}`, `{sk}`", self.partition_key),
            None => format!("`{}`", self.partition_key),
        }
    }

    /// Whether `name` is a key attribute.
    pub fn is_key_attr(&self, name: &str) -> bool {
        name == self.partition_key || Some(name) == self.sort_key
    }

    /// A key attribute's value: a non-empty string or a number.
    pub fn key_part<C: KeyCodec>(&self, attr: &str, v: &Value) -> Result<C::Part, CapError> {
        let table = self.table;
        match v {
            Value::String(s) if s.is_empty() => Err(CapError::Invalid(format!(
                "table `{table}`: key attribute `{attr}` is an empty string"
            ))),
            Value::String(s) => Ok(C::text(s)),
            Value::Number(n) => C::number(n).ok_or_else(|| {
                CapError::Invalid(format!(
                    "table `{table}`: key attribute `{attr}` is a number out of range"
                ))
            }),
            other => Err(CapError::Invalid(format!(
                "table `{table}`: key attribute `{attr}` must be a string or a number, got {}",
                json_kind(other)
            ))),
        }
    }

    /// The key of an object holding (at least) the key attributes; `what`
    /// names the object in messages (`key`, `item`).
    pub fn extract_key<C: KeyCodec>(
        &self,
        obj: &Map<String, Value>,
        what: &str,
    ) -> Result<TableKey<C::Part>, CapError> {
        let mut json = Map::new();
        let mut part = |name: &str, kind: &str| {
            let v = obj.get(name).ok_or_else(|| {
                CapError::Invalid(format!(
                    "{what} for table `{}` is missing the {kind} key attribute `{name}`",
                    self.table
                ))
            })?;
            json.insert(name.to_string(), v.clone());
            self.key_part::<C>(name, v)
        };
        let partition = part(self.partition_key, "partition")?;
        let sort = self.sort_key.map(|sk| part(sk, "sort")).transpose()?;
        Ok(TableKey {
            partition,
            sort,
            json: Value::Object(json),
        })
    }

    /// A key given by the caller: an object of exactly the key attributes.
    pub fn parse_key<C: KeyCodec>(&self, key: &Value) -> Result<TableKey<C::Part>, CapError> {
        let Value::Object(obj) = key else {
            return Err(CapError::Invalid(format!(
                "a key for table `{}` must be a JSON object holding {}, got {}",
                self.table,
                self.key_names(),
                json_kind(key)
            )));
        };
        if let Some(extra) = obj.keys().find(|k| !self.is_key_attr(k)) {
            return Err(CapError::Invalid(format!(
                "key for table `{}` has attribute `{extra}`, which is not a key attribute (the key is {})",
                self.table,
                self.key_names()
            )));
        }
        self.extract_key::<C>(obj, "key")
    }

    /// The key of a whole item.
    pub fn item_key<C: KeyCodec>(&self, item: &Value) -> Result<TableKey<C::Part>, CapError> {
        let Value::Object(obj) = item else {
            return Err(CapError::Invalid(format!(
                "an item for table `{}` must be a JSON object, got {}",
                self.table,
                json_kind(item)
            )));
        };
        self.extract_key::<C>(obj, "item")
    }

    /// The key of an update, refusing an update that would change a key
    /// attribute or both set and remove one attribute.
    pub fn update_key<C: KeyCodec>(
        &self,
        key: &Value,
        set: &Map<String, Value>,
        remove: &[String],
    ) -> Result<TableKey<C::Part>, CapError> {
        let key = self.parse_key::<C>(key)?;
        let table = self.table;
        if let Some(name) = set
            .keys()
            .map(String::as_str)
            .chain(remove.iter().map(String::as_str))
            .find(|n| self.is_key_attr(n))
        {
            return Err(CapError::Invalid(format!(
                "table `{table}`: an update cannot change the key attribute `{name}`"
            )));
        }
        if let Some(name) = remove.iter().find(|n| set.contains_key(n.as_str())) {
            return Err(CapError::Invalid(format!(
                "table `{table}`: an update cannot both set and remove the attribute `{name}`"
            )));
        }
        Ok(key)
    }

    /// The partition of a query: its partition key's value, given as the
    /// value or as an object holding just the partition key attribute.
    pub fn query_partition<C: KeyCodec>(&self, partition: &Value) -> Result<C::Part, CapError> {
        let (table, pk) = (self.table, self.partition_key);
        let value = match partition {
            Value::Object(obj) => {
                if let Some(extra) = obj.keys().find(|k| *k != pk) {
                    return Err(CapError::Invalid(format!(
                        "partition for table `{table}` has attribute `{extra}`; give the partition key `{pk}` only"
                    )));
                }
                obj.get(pk).ok_or_else(|| {
                    CapError::Invalid(format!(
                        "partition for table `{table}` is missing the partition key attribute `{pk}`"
                    ))
                })?
            }
            other => other,
        };
        self.key_part::<C>(pk, value)
    }

    /// Refuses a sort-key prefix on a table without a sort key; the prefix
    /// to match (`None` for none or an empty one).
    pub fn query_prefix<'p>(&self, prefix: Option<&'p str>) -> Result<Option<&'p str>, CapError> {
        let prefix = prefix.filter(|p| !p.is_empty());
        if prefix.is_some() && self.sort_key.is_none() {
            return Err(CapError::Invalid(format!(
                "table `{}` has no sort key to match a prefix against",
                self.table
            )));
        }
        Ok(prefix)
    }

    /// Where a query's previous page ended, given as a key object (the
    /// `next` of a page) or a bare sort key value: the sort key's value, or
    /// `None` when the table has no sort key (one item per partition, so
    /// nothing follows).
    pub fn query_start_after<C: KeyCodec>(
        &self,
        after: &Value,
    ) -> Result<Option<C::Part>, CapError> {
        let Some(sk) = self.sort_key else {
            return Ok(None);
        };
        let value = match after {
            Value::Object(obj) => obj.get(sk).ok_or_else(|| {
                CapError::Invalid(format!(
                    "start-after for table `{}` is missing the sort key attribute `{sk}`",
                    self.table
                ))
            })?,
            v => v,
        };
        self.key_part::<C>(sk, value).map(Some)
    }

    /// The keys of a transaction's writes, each checked as its single-item
    /// call checks it (an update's `add` also may not name a key attribute
    /// or an attribute it sets or removes), refusing two writes to one item.
    pub fn transact_keys<C: KeyCodec>(
        &self,
        items: &[TransactItem],
    ) -> Result<Vec<TableKey<C::Part>>, CapError> {
        let table = self.table;
        let mut seen: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
        let mut keys = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let at = |e| at_item(i, e);
            let key = match item {
                TransactItem::Put(p) => self.item_key::<C>(&p.item),
                TransactItem::Update(u) => {
                    if u.set.is_empty() && u.add.is_empty() && u.remove.is_empty() {
                        // DynamoDB's transactions take no update without an
                        // update expression.
                        return Err(at(CapError::Invalid(format!(
                            "table `{table}`: an update in a transaction must set, add or remove an attribute"
                        ))));
                    }
                    if let Some((name, v)) = u.add.iter().find(|(_, v)| !v.is_number()) {
                        return Err(at(CapError::Invalid(format!(
                            "add: `{name}` must be a number, got {}",
                            json_kind(v)
                        ))));
                    }
                    if let Some(name) = u.add.keys().find(|n| {
                        self.is_key_attr(n)
                            || u.set.contains_key(n.as_str())
                            || u.remove.iter().any(|r| r == *n)
                    }) {
                        return Err(at(CapError::Invalid(format!(
                            "table `{table}`: an update cannot add to `{name}`, a key attribute or one it also sets or removes"
                        ))));
                    }
                    self.update_key::<C>(&u.key, &u.set, &u.remove)
                }
                TransactItem::Delete { key, .. } | TransactItem::Check { key, .. } => {
                    self.parse_key::<C>(key)
                }
            }
            .map_err(at)?;
            if let Some(j) = seen.insert(key.json.to_string(), i) {
                return Err(CapError::Invalid(format!(
                    "table `{table}`: items[{j}] and items[{i}] both write {}; a transaction writes an item once",
                    key.json
                )));
            }
            keys.push(key);
        }
        Ok(keys)
    }

    /// The key attributes of an item (the `next` of a query page).
    pub fn key_of(&self, item: &Value) -> Value {
        let mut key = Map::new();
        for name in self.key_attrs() {
            if let Some(v) = item.get(name) {
                key.insert(name.to_string(), v.clone());
            }
        }
        Value::Object(key)
    }
}

/// An invalid item's error, naming the item (`items[i]: …`).
pub fn at_item(i: usize, e: CapError) -> CapError {
    match e {
        CapError::Invalid(m) => CapError::Invalid(format!("items[{i}]: {m}")),
        other => other,
    }
}

/// `current + delta` for a transaction's `add`: an absent attribute
/// counts as 0; integers stay integers while they fit.
pub fn add_number(
    table: &str,
    name: &str,
    current: Option<&Value>,
    delta: &Number,
) -> Result<Value, CapError> {
    let current = match current {
        None | Some(Value::Null) => return Ok(Value::Number(delta.clone())),
        Some(Value::Number(n)) => n,
        Some(other) => {
            return Err(CapError::Invalid(format!(
                "table `{table}`: cannot add to `{name}`, which holds {}",
                json_kind(other)
            )))
        }
    };
    if let (Some(a), Some(b)) = (current.as_i64(), delta.as_i64()) {
        if let Some(sum) = a.checked_add(b) {
            return Ok(Value::from(sum));
        }
    }
    let sum = current.as_f64().unwrap_or(0.0) + delta.as_f64().unwrap_or(0.0);
    Number::from_f64(sum).map(Value::Number).ok_or_else(|| {
        CapError::Invalid(format!(
            "table `{table}`: adding to `{name}` gives {sum}, not a JSON number"
        ))
    })
}

/// The error of a write to `table` whose condition was false.
pub fn condition_failed(table: &str, key: &Value, condition: &Condition) -> CapError {
    CapError::ConditionFailed(format!(
        "table `{table}`, key {key}: {}",
        condition.failure()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Parts as JSON text, numbers only when they are integers.
    struct Text;

    impl KeyCodec for Text {
        type Part = String;
        fn text(s: &str) -> String {
            format!("S:{s}")
        }
        fn number(n: &Number) -> Option<String> {
            n.as_i64().map(|i| format!("N:{i}"))
        }
    }

    fn def(sort: Option<&str>) -> TableDef {
        TableDef {
            partition_key: "PK".into(),
            sort_key: sort.map(Into::into),
        }
    }

    fn invalid(e: CapError) -> String {
        match e {
            CapError::Invalid(m) => m,
            other => panic!("expected invalid, got {other}"),
        }
    }

    #[test]
    fn keys_of_items_and_keys() {
        let d = def(Some("SK"));
        let s = KeySchema::new("t", &d);
        let k = s
            .item_key::<Text>(&json!({"PK": "a", "SK": 7, "x": 1}))
            .expect("key");
        assert_eq!(k.partition, "S:a");
        assert_eq!(k.sort.as_deref(), Some("N:7"));
        assert_eq!(k.json, json!({"PK": "a", "SK": 7}));
        let k = s
            .parse_key::<Text>(&json!({"PK": "a", "SK": "b"}))
            .expect("key");
        assert_eq!(k.json, json!({"PK": "a", "SK": "b"}));

        let d = def(None);
        let s = KeySchema::new("t", &d);
        let k = s.parse_key::<Text>(&json!({"PK": 1})).expect("key");
        assert_eq!((k.partition.as_str(), k.sort), ("N:1", None));
    }

    #[test]
    fn malformed_keys_are_refused_with_the_backends_texts() {
        let d = def(Some("SK"));
        let s = KeySchema::new("t", &d);
        let err = |v: Value| invalid(s.parse_key::<Text>(&v).expect_err("refused"));
        assert_eq!(
            err(json!("a")),
            "a key for table `t` must be a JSON object holding `PK`, `SK`, got a string"
        );
        assert_eq!(
            err(json!({"PK": "a", "SK": "b", "x": 1})),
            "key for table `t` has attribute `x`, which is not a key attribute (the key is `PK`, `SK`)"
        );
        assert_eq!(
            err(json!({"PK": "a"})),
            "key for table `t` is missing the sort key attribute `SK`"
        );
        assert_eq!(
            err(json!({"SK": "a"})),
            "key for table `t` is missing the partition key attribute `PK`"
        );
        assert_eq!(
            err(json!({"PK": "", "SK": "b"})),
            "table `t`: key attribute `PK` is an empty string"
        );
        assert_eq!(
            err(json!({"PK": true, "SK": "b"})),
            "table `t`: key attribute `PK` must be a string or a number, got a boolean"
        );
        assert_eq!(
            err(json!({"PK": 1.5, "SK": "b"})),
            "table `t`: key attribute `PK` is a number out of range"
        );
        assert_eq!(
            invalid(s.item_key::<Text>(&json!([1])).expect_err("refused")),
            "an item for table `t` must be a JSON object, got an array"
        );
        assert_eq!(
            invalid(
                s.item_key::<Text>(&json!({"SK": "b"}))
                    .expect_err("refused")
            ),
            "item for table `t` is missing the partition key attribute `PK`"
        );
    }

    #[test]
    fn updates_cannot_touch_the_key() {
        let d = def(Some("SK"));
        let s = KeySchema::new("t", &d);
        let key = json!({"PK": "a", "SK": "b"});
        let set = |v: Value| v.as_object().cloned().expect("an object");
        assert!(s
            .update_key::<Text>(&key, &set(json!({"n": 1})), &["m".into()])
            .is_ok());
        assert_eq!(
            invalid(
                s.update_key::<Text>(&key, &set(json!({"SK": 1})), &[])
                    .expect_err("refused")
            ),
            "table `t`: an update cannot change the key attribute `SK`"
        );
        assert_eq!(
            invalid(
                s.update_key::<Text>(&key, &set(json!({"n": 1})), &["n".into()])
                    .expect_err("refused")
            ),
            "table `t`: an update cannot both set and remove the attribute `n`"
        );
    }

    #[test]
    fn query_arguments() {
        let d = def(Some("SK"));
        let s = KeySchema::new("t", &d);
        assert_eq!(s.query_partition::<Text>(&json!("a")).expect("pk"), "S:a");
        assert_eq!(
            s.query_partition::<Text>(&json!({"PK": "a"})).expect("pk"),
            "S:a"
        );
        assert_eq!(
            invalid(
                s.query_partition::<Text>(&json!({"PK": "a", "SK": "b"}))
                    .expect_err("refused")
            ),
            "partition for table `t` has attribute `SK`; give the partition key `PK` only"
        );
        assert_eq!(
            invalid(s.query_partition::<Text>(&json!({})).expect_err("refused")),
            "partition for table `t` is missing the partition key attribute `PK`"
        );
        assert_eq!(s.query_prefix(Some("")).expect("prefix"), None);
        assert_eq!(s.query_prefix(Some("x")).expect("prefix"), Some("x"));
        assert_eq!(
            s.query_start_after::<Text>(&json!({"PK": "a", "SK": "b"}))
                .expect("after"),
            Some("S:b".to_string())
        );
        assert_eq!(
            s.query_start_after::<Text>(&json!(3)).expect("after"),
            Some("N:3".to_string())
        );
        assert_eq!(
            invalid(
                s.query_start_after::<Text>(&json!({"PK": "a"}))
                    .expect_err("refused")
            ),
            "start-after for table `t` is missing the sort key attribute `SK`"
        );
        assert_eq!(
            s.key_of(&json!({"PK": "a", "SK": "b", "n": 1})),
            json!({"PK": "a", "SK": "b"})
        );

        let d = def(None);
        let s = KeySchema::new("t", &d);
        assert_eq!(
            invalid(s.query_prefix(Some("x")).expect_err("refused")),
            "table `t` has no sort key to match a prefix against"
        );
        assert_eq!(
            s.query_start_after::<Text>(&json!("x")).expect("after"),
            None
        );
        assert_eq!(s.key_of(&json!({"PK": "a", "n": 1})), json!({"PK": "a"}));
    }

    #[test]
    fn failed_conditions_say_what_was_expected() {
        let key = json!({"PK": "a"});
        let text = |c: Condition| condition_failed("t", &key, &c).to_string();
        assert_eq!(
            text(Condition::NotExists),
            "condition failed: table `t`, key {\"PK\":\"a\"}: the item exists"
        );
        assert_eq!(
            text(Condition::Exists),
            "condition failed: table `t`, key {\"PK\":\"a\"}: the item does not exist"
        );
        assert_eq!(
            text(Condition::AttributeEquals("v".into(), json!(2))),
            "condition failed: table `t`, key {\"PK\":\"a\"}: attribute `v` does not equal 2"
        );
    }
}
