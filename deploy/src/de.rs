//! A serde `Deserializer` over the located YAML tree, so the compose model can be derived
//! while every error still points at the `file:line:column` of the value at fault and names
//! its dotted path (`services.web.deploy.replicas`).
//!
//! Compose reads scalars loosely, and so does this: any scalar reads as a string (its text as
//! written), a string holding a number or a boolean reads as one (interpolation makes strings
//! of everything), and a `null` field of a struct counts as absent.
//! Architecture invariant: knows the tree, not compose.

use serde::de::{self, DeserializeSeed, Deserializer, IntoDeserializer, MapAccess, SeqAccess, Visitor};
use std::fmt;

use crate::yaml::{Entry, Mark, Node, Value};

/// Reads a `T` out of `node`, whose dotted path is `path`.
pub(crate) fn from_node<'de, T: de::Deserialize<'de>>(node: &'de Node, path: &str) -> Result<T, DeError> {
    T::deserialize(De { node, path: path.to_owned() })
}

/// A deserialization error; `mark` and `path` are those of the innermost value that failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DeError {
    pub mark: Option<Mark>,
    pub path: String,
    pub message: String,
}

impl DeError {
    fn locate(mut self, mark: Mark, path: &str) -> DeError {
        if self.mark.is_none() {
            self.mark = Some(mark);
            path.clone_into(&mut self.path);
        }
        self
    }
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError { mark: None, path: String::new(), message: msg.to_string() }
    }

    fn invalid_type(unexp: de::Unexpected, exp: &dyn de::Expected) -> Self {
        let found = match unexp {
            de::Unexpected::Str(s) => format!("{s:?}"),
            de::Unexpected::Map => "a mapping".to_owned(),
            de::Unexpected::Seq => "a list".to_owned(),
            de::Unexpected::Unit => "null".to_owned(),
            de::Unexpected::Signed(n) => n.to_string(),
            de::Unexpected::Unsigned(n) => n.to_string(),
            de::Unexpected::Float(n) => n.to_string(),
            de::Unexpected::Bool(b) => b.to_string(),
            other => other.to_string(),
        };
        let expected = match exp.to_string().as_str() {
            "u8" | "u16" | "u32" | "u64" | "i8" | "i16" | "i32" | "i64" => "an integer".to_owned(),
            "f32" | "f64" => "a number".to_owned(),
            "a string" => "a string".to_owned(),
            other if other.starts_with("struct ") => "a mapping".to_owned(),
            other => other.to_owned(),
        };
        de::Error::custom(format_args!("expected {expected}, found {found}"))
    }

    fn invalid_value(unexp: de::Unexpected, exp: &dyn de::Expected) -> Self {
        match (unexp, exp.to_string().as_str()) {
            (de::Unexpected::Signed(n), "u8" | "u16" | "u32" | "u64") => {
                de::Error::custom(format_args!("expected a non-negative integer, found {n}"))
            }
            _ => Self::invalid_type(unexp, exp),
        }
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        let list: Vec<String> = expected.iter().map(|v| format!("{v:?}")).collect();
        de::Error::custom(format_args!("unknown value {variant:?}: expected one of {}", list.join(", ")))
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        let list: Vec<String> = expected.iter().map(|v| format!("{v:?}")).collect();
        de::Error::custom(format_args!("unknown key {field:?}: expected one of {}", list.join(", ")))
    }

    fn missing_field(field: &'static str) -> Self {
        de::Error::custom(format_args!("{field:?} is required"))
    }
}

struct De<'de> {
    node: &'de Node,
    path: String,
}

impl<'de> De<'de> {
    fn any<V: Visitor<'de>>(&self, visitor: V) -> Result<V::Value, DeError> {
        match &self.node.value {
            Value::Null => visitor.visit_unit(),
            Value::Bool { value, .. } => visitor.visit_bool(*value),
            Value::Int { value, .. } => match i64::try_from(*value) {
                Ok(v) => visitor.visit_i64(v),
                Err(_) => visitor.visit_i128(*value),
            },
            Value::Float { text } => match text.parse::<f64>() {
                Ok(v) => visitor.visit_f64(v),
                Err(_) => visitor.visit_str(text),
            },
            Value::Str(text) => visitor.visit_str(text),
            Value::Seq(items) => visitor.visit_seq(Seq { items, index: 0, path: &self.path }),
            Value::Map(entries) => visitor.visit_map(Map { entries, index: 0, path: &self.path, skip_null: false }),
        }
    }

    fn wrap<T>(&self, result: Result<T, DeError>) -> Result<T, DeError> {
        result.map_err(|e| e.locate(self.node.mark, &self.path))
    }

    /// The text of a string scalar, for the number and boolean readers.
    fn str_text(&self) -> Option<&'de str> {
        match &self.node.value {
            Value::Str(text) => Some(text.trim()),
            _ => None,
        }
    }
}

macro_rules! number {
    ($method:ident, $ty:ty, $visit:ident) => {
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
            let result = match self.str_text().and_then(|t| t.parse::<$ty>().ok()) {
                Some(v) => visitor.$visit(v),
                None => self.any(visitor),
            };
            self.wrap(result)
        }
    };
}

impl<'de> Deserializer<'de> for De<'de> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.wrap(self.any(visitor))
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let result = match self.str_text() {
            Some("true" | "True" | "TRUE") => visitor.visit_bool(true),
            Some("false" | "False" | "FALSE") => visitor.visit_bool(false),
            _ => self.any(visitor),
        };
        self.wrap(result)
    }

    number!(deserialize_i8, i8, visit_i8);
    number!(deserialize_i16, i16, visit_i16);
    number!(deserialize_i32, i32, visit_i32);
    number!(deserialize_i64, i64, visit_i64);
    number!(deserialize_u8, u8, visit_u8);
    number!(deserialize_u16, u16, visit_u16);
    number!(deserialize_u32, u32, visit_u32);
    number!(deserialize_u64, u64, visit_u64);
    number!(deserialize_f32, f32, visit_f32);
    number!(deserialize_f64, f64, visit_f64);

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let result = match self.node.scalar_text() {
            Some(text) => visitor.visit_str(text),
            None => self.any(visitor),
        };
        self.wrap(result)
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.node.value {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(self, _: &'static str, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let result = match &self.node.value {
            Value::Map(entries) => visitor.visit_map(Map { entries, index: 0, path: &self.path, skip_null: true }),
            _ => self.any(visitor),
        };
        self.wrap(result)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let result = match self.node.scalar_text() {
            Some(text) => visitor.visit_enum(text.into_deserializer()),
            None => self.any(visitor),
        };
        self.wrap(result)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        i128 u128 char bytes byte_buf unit unit_struct seq tuple tuple_struct map identifier
    }
}

struct Seq<'de, 'p> {
    items: &'de [Node],
    index: usize,
    path: &'p str,
}

impl<'de> SeqAccess<'de> for Seq<'de, '_> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, DeError> {
        let Some(node) = self.items.get(self.index) else {
            return Ok(None);
        };
        let path = format!("{}[{}]", self.path, self.index);
        self.index += 1;
        let de = De { node, path };
        let mark = node.mark;
        let path = de.path.clone();
        seed.deserialize(de).map(Some).map_err(|e| e.locate(mark, &path))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len() - self.index)
    }
}

struct Map<'de, 'p> {
    entries: &'de [Entry],
    index: usize,
    path: &'p str,
    /// For structs: a field set to null is absent.
    skip_null: bool,
}

impl Map<'_, '_> {
    fn child_path(&self, key: &str) -> String {
        join(self.path, key)
    }
}

/// `parent.key`, or `key` at the top.
pub(crate) fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

impl<'de> MapAccess<'de> for Map<'de, '_> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, DeError> {
        while let Some(entry) = self.entries.get(self.index) {
            if self.skip_null && entry.value.value == Value::Null {
                self.index += 1;
                continue;
            }
            let key: &str = &entry.key;
            let path = self.child_path(key);
            let key: de::value::StrDeserializer<'_, DeError> = key.into_deserializer();
            return seed.deserialize(key).map(Some).map_err(|e| e.locate(entry.key_mark, &path));
        }
        Ok(None)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let Some(entry) = self.entries.get(self.index) else {
            return Err(de::Error::custom("a value without a key"));
        };
        self.index += 1;
        let path = self.child_path(&entry.key);
        let de = De { node: &entry.value, path: path.clone() };
        seed.deserialize(de).map_err(|e| e.locate(entry.value.mark, &path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml;
    use serde::Deserialize;

    #[derive(Deserialize, Debug, PartialEq)]
    struct Inner {
        count: Option<u64>,
        flag: Option<bool>,
    }

    #[derive(Deserialize, Debug, PartialEq)]
    struct Outer {
        name: String,
        inner: Option<Inner>,
        #[serde(default)]
        list: Vec<String>,
    }

    fn read(text: &str) -> Result<Outer, DeError> {
        let node = yaml::parse(text, 0).expect("valid YAML");
        from_node(&node, "top")
    }

    #[test]
    fn reads_loosely() {
        let outer = read("name: 1.10\ninner: {count: '3', flag: 'true'}\nlist: [a, 2]\n").expect("valid");
        assert_eq!(outer.name, "1.10");
        assert_eq!(outer.inner, Some(Inner { count: Some(3), flag: Some(true) }));
        assert_eq!(outer.list, ["a", "2"]);
        let outer = read("name: x\ninner:\nlist:\n").expect("nulls are absent");
        assert_eq!(outer.inner, None);
    }

    #[test]
    fn errors_point_at_the_innermost_value() {
        let err = read("name: x\ninner:\n  count: three\n").expect_err("not a number");
        assert_eq!(err.mark, Some(Mark { file: 0, line: 3, column: 10 }));
        assert_eq!(err.path, "top.inner.count");
        assert_eq!(err.message, "expected an integer, found \"three\"");
        let err = read("name: x\nlist: [a, [b]]\n").expect_err("nested list");
        assert_eq!(err.path, "top.list[1]");
        assert_eq!(err.mark, Some(Mark { file: 0, line: 2, column: 11 }));
    }
}
