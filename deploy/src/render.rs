//! The compose model back to YAML, for `stack config`: every `$` doubled so that loading
//! the output again gives the same model, keys in a fixed order (the model's field order,
//! names sorted), so the same files always give byte-identical text.

use serde_json::Value;

use crate::interpolate::escape;
use crate::model::Compose;

/// `compose` as YAML text.
pub(crate) fn render(compose: &Compose) -> String {
    let value = match serde_json::to_value(compose) {
        Ok(value) => escaped(value),
        // The model holds only strings, numbers, booleans, lists and string-keyed maps, which
        // always convert; keep the reason rather than panic if that ever changes.
        Err(err) => return format!("# cannot render the compose model: {err}\n"),
    };
    // Plain scalars however long: folding a long path or command into `>-`
    // blocks would make the output depend on where the files live.
    let options = serde_saphyr::ser_options! { prefer_block_scalars: false };
    serde_saphyr::to_string_with_options(&value, options)
        .unwrap_or_else(|err| format!("# cannot render the compose model: {err}\n"))
}

fn escaped(value: Value) -> Value {
    match value {
        Value::String(s) => Value::String(escape(&s)),
        Value::Array(items) => Value::Array(items.into_iter().map(escaped).collect()),
        Value::Object(map) => Value::Object(map.into_iter().map(|(k, v)| (k, escaped(v))).collect()),
        other => other,
    }
}
