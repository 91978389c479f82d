//! The four dialects, parsed into one [`Event`]: what each media server posts (field
//! names from their sources: nginx-rtmp's `ngx_rtmp_notify_module.c`, SRS's
//! `srs_app_http_hooks.cpp`, ZLMediaKit's `server/WebHook.cpp`, Owncast's
//! `core/webhooks`), and the answer each expects.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::config::{Dialect, ServerHooks};

/// What an event says, in mediaretain's terms.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A file is complete (a finished recording or segment): its absolute path here, the
    /// tags the event gives it, and whether it is a recording (a segment is only logged at
    /// debug level).
    Complete {
        /// Absolute path, container prefixes mapped.
        path: PathBuf,
        /// `key=value` facts from the event.
        tags: Vec<(String, String)>,
        /// A recording (not a segment).
        recording: bool,
    },
    /// A stream started (`live`) or stopped publishing.
    Stream {
        /// Its application (nginx-rtmp, SRS, ZLMediaKit); empty for Owncast.
        app: String,
        /// Its name; empty for Owncast (one stream per server).
        stream: String,
        /// Started (true) or stopped.
        live: bool,
    },
    /// An event mediaretain has no use for (on_play, chat…): acknowledged, nothing done.
    Ignored(String),
}

/// A malformed event: the reason, in words.
pub type Malformed = String;

/// Parses one request of `dialect`: `event` is the last path segment (ZLMediaKit's
/// per-event URLs), `body` the raw body (or nginx-rtmp's query string for GET).
pub fn parse(
    dialect: Dialect,
    event: Option<&str>,
    body: &[u8],
    server: &ServerHooks,
) -> Result<Event, Malformed> {
    match dialect {
        Dialect::NginxRtmp => nginx_rtmp(body, server),
        Dialect::Srs => srs(&json(body)?, server),
        Dialect::Zlmediakit => zlmediakit(event, &json(body)?, server),
        Dialect::Owncast => owncast(&json(body)?),
    }
}

fn json(body: &[u8]) -> Result<Value, Malformed> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("malformed JSON: {e}"))?;
    if !v.is_object() {
        return Err("the body must be a JSON object".into());
    }
    Ok(v)
}

/// A string field of a JSON event ("" when absent).
fn field<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// `path` as it is here: the longest configured container prefix mapped to its host path.
/// Relative paths, `..` and NUL are refused.
fn host_path(path: &str, server: &ServerHooks) -> Result<PathBuf, Malformed> {
    if path.is_empty() {
        return Err("the event names no file".into());
    }
    if path.contains('\0') {
        return Err("the path contains a NUL byte".into());
    }
    let p = Path::new(path);
    if !p.is_absolute() {
        return Err(format!("{path:?} is not an absolute path"));
    }
    if p.components().any(|c| c == std::path::Component::ParentDir) {
        return Err(format!("{path:?} contains '..'"));
    }
    for (from, to) in &server.paths {
        if let Ok(rest) = p.strip_prefix(from) {
            return Ok(to.join(rest));
        }
    }
    Ok(p.to_path_buf())
}

fn tags(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .filter(|(_, v)| !v.trim().is_empty())
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// nginx-rtmp: form-encoded fields, the session's first, then the event's, then the
/// publisher's own RTMP arguments appended raw — so a publisher could add `path=` or
/// `call=`: the FIRST occurrence of each key counts, and `path` only for `record_done`.
fn nginx_rtmp(body: &[u8], server: &ServerHooks) -> Result<Event, Malformed> {
    let mut fields: Vec<(String, String)> = Vec::new();
    for (k, v) in form_urlencoded::parse(body) {
        if !fields.iter().any(|(x, _)| *x == k) {
            fields.push((k.into_owned(), v.into_owned()));
        }
    }
    let get = |k: &str| {
        fields
            .iter()
            .find(|(x, _)| x == k)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    };
    let (app, name) = (get("app"), get("name"));
    match get("call") {
        "" => Err("no `call` field: not an nginx-rtmp notification".into()),
        "record_done" => Ok(Event::Complete {
            path: host_path(get("path"), server)?,
            tags: tags(&[
                ("server", "nginx-rtmp"),
                ("app", app),
                ("stream", name),
                ("recorder", get("recorder")),
            ]),
            recording: true,
        }),
        "publish" => Ok(Event::Stream {
            app: app.into(),
            stream: name.into(),
            live: true,
        }),
        "publish_done" => Ok(Event::Stream {
            app: app.into(),
            stream: name.into(),
            live: false,
        }),
        other => Ok(Event::Ignored(other.to_string())),
    }
}

/// SRS: JSON with `action`; `file` and `m3u8` are relative to `cwd` unless absolute.
fn srs(v: &Value, server: &ServerHooks) -> Result<Event, Malformed> {
    let (app, stream) = (field(v, "app"), field(v, "stream"));
    let file = || {
        let (cwd, file) = (field(v, "cwd"), field(v, "file"));
        let joined = if Path::new(file).is_absolute() || file.is_empty() {
            file.to_string()
        } else {
            // `./objs/…` against the server's working directory.
            let rel: PathBuf = Path::new(file)
                .components()
                .filter(|c| *c != std::path::Component::CurDir)
                .collect();
            Path::new(cwd).join(rel).to_string_lossy().into_owned()
        };
        host_path(&joined, server)
    };
    match field(v, "action") {
        "" => Err("no `action` field: not an SRS hook".into()),
        "on_dvr" => Ok(Event::Complete {
            path: file()?,
            tags: tags(&[("server", "srs"), ("app", app), ("stream", stream)]),
            recording: true,
        }),
        "on_hls" => Ok(Event::Complete {
            path: file()?,
            tags: Vec::new(),
            recording: false,
        }),
        "on_publish" => Ok(Event::Stream {
            app: app.into(),
            stream: stream.into(),
            live: true,
        }),
        "on_unpublish" => Ok(Event::Stream {
            app: app.into(),
            stream: stream.into(),
            live: false,
        }),
        other => Ok(Event::Ignored(other.to_string())),
    }
}

/// ZLMediaKit: the event is named by the URL (`on_record_mp4` and `on_record_ts` post the
/// same body); `file_path` is absolute.
fn zlmediakit(event: Option<&str>, v: &Value, server: &ServerHooks) -> Result<Event, Malformed> {
    let (app, stream) = (field(v, "app"), field(v, "stream"));
    match event.unwrap_or("") {
        "" => Err("ZLMediaKit posts every hook with the same fields: name the event in the URL (/hooks/zlmediakit/on_record_mp4)".into()),
        "on_record_mp4" => {
            let secs = v.get("time_len").and_then(Value::as_f64).map(|s| format!("{s:.0}s"));
            Ok(Event::Complete {
                path: host_path(field(v, "file_path"), server)?,
                tags: tags(&[
                    ("server", "zlmediakit"),
                    ("app", app),
                    ("stream", stream),
                    ("duration", secs.as_deref().unwrap_or("")),
                ]),
                recording: true,
            })
        }
        "on_record_ts" => Ok(Event::Complete {
            path: host_path(field(v, "file_path"), server)?,
            tags: Vec::new(),
            recording: false,
        }),
        // Sent once per schema a stream is muxed to: only HLS is about files.
        "on_stream_changed" if matches!(field(v, "schema"), "hls" | "hls.fmp4") => {
            let live = v
                .get("regist")
                .and_then(Value::as_bool)
                .ok_or("on_stream_changed without a boolean `regist`")?;
            Ok(Event::Stream {
                app: app.into(),
                stream: stream.into(),
                live,
            })
        }
        other => Ok(Event::Ignored(other.to_string())),
    }
}

/// Owncast: `{"type": "STREAM_STARTED" | "STREAM_STOPPED", "eventData": {…}}`; one stream.
fn owncast(v: &Value) -> Result<Event, Malformed> {
    match field(v, "type") {
        "" => Err("no `type` field: not an Owncast webhook".into()),
        "STREAM_STARTED" | "STREAM_STOPPED" => Ok(Event::Stream {
            app: String::new(),
            stream: String::new(),
            live: field(v, "type") == "STREAM_STARTED",
        }),
        other => Ok(Event::Ignored(other.to_string())),
    }
}

/// The body each server expects for "done" (`ok`) or for a refusal (`error`).
pub fn answer(dialect: Dialect, error: Option<&str>) -> Value {
    match (dialect, error) {
        (Dialect::Zlmediakit, None) => serde_json::json!({"code": 0, "msg": "success"}),
        (Dialect::Zlmediakit, Some(e)) => serde_json::json!({"code": -1, "msg": e, "error": e}),
        (Dialect::Srs, None) => serde_json::json!({"code": 0}),
        (_, None) => serde_json::json!({}),
        (_, Some(e)) => serde_json::json!({"code": 400, "error": e}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(from: &str, to: &str) -> ServerHooks {
        ServerHooks {
            paths: vec![(from.into(), to.into())],
            ..Default::default()
        }
    }

    #[test]
    fn nginx_rtmp_takes_the_first_of_each_field_and_path_only_for_record_done() {
        let none = ServerHooks::default();
        // The publisher's own arguments come last and cannot override the module's.
        let body = b"app=live&tcurl=rtmp://h/live&addr=127.0.0.1&clientid=7&call=record_done&recorder=&name=cam1&path=/rec/cam1-17.flv&path=/etc/passwd&call=x";
        let e = parse(Dialect::NginxRtmp, None, body, &none).unwrap();
        assert_eq!(
            e,
            Event::Complete {
                path: "/rec/cam1-17.flv".into(),
                tags: vec![
                    ("server".into(), "nginx-rtmp".into()),
                    ("app".into(), "live".into()),
                    ("stream".into(), "cam1".into())
                ],
                recording: true
            }
        );
        let body = b"app=live&call=publish_done&name=cam1&path=/etc/passwd&call=record_done";
        assert!(matches!(
            parse(Dialect::NginxRtmp, None, body, &none).unwrap(),
            Event::Stream { live: false, .. }
        ));
        assert!(parse(Dialect::NginxRtmp, None, b"app=x", &none).is_err());
        let body = b"call=record_done&path=/rec/../etc/passwd";
        assert!(parse(Dialect::NginxRtmp, None, body, &none).is_err());
    }

    #[test]
    fn srs_paths_are_joined_to_cwd_and_container_prefixes_mapped() {
        let body = br#"{"action":"on_dvr","client_id":"9308h583","ip":"192.168.1.10","vhost":"__defaultVhost__","app":"live","stream":"livestream","param":"?token=x","cwd":"/usr/local/srs","file":"./objs/nginx/html/live/livestream.1420254068776.flv"}"#;
        let m = map("/usr/local/srs/objs/nginx/html", "/srv/srs/html");
        match parse(Dialect::Srs, None, body, &m).unwrap() {
            Event::Complete { path, .. } => assert_eq!(
                path,
                Path::new("/srv/srs/html/live/livestream.1420254068776.flv")
            ),
            e => panic!("{e:?}"),
        }
        assert!(parse(Dialect::Srs, None, b"[1]", &m).is_err());
        assert!(parse(Dialect::Srs, None, b"{\"action\":", &m).is_err());
    }

    #[test]
    fn zlmediakit_needs_the_event_in_the_url() {
        let body = br#"{"app":"live","file_name":"a.mp4","file_path":"/opt/media/bin/www/record/live/cam1/2024-05-01/a.mp4","file_size":7,"folder":"/opt/media/bin/www/record/live/cam1/","start_time":1714557600,"stream":"cam1","time_len":3600.04,"url":"record/live/cam1/2024-05-01/a.mp4","vhost":"__defaultVhost__","mediaServerId":"x","hook_index":1}"#;
        let none = ServerHooks::default();
        assert!(parse(Dialect::Zlmediakit, None, body, &none).is_err());
        match parse(Dialect::Zlmediakit, Some("on_record_mp4"), body, &none).unwrap() {
            Event::Complete { tags, .. } => {
                assert!(tags.contains(&("duration".into(), "3600s".into())))
            }
            e => panic!("{e:?}"),
        }
        let body = br#"{"app":"live","regist":false,"schema":"rtmp","stream":"cam1"}"#;
        assert!(matches!(
            parse(Dialect::Zlmediakit, Some("on_stream_changed"), body, &none).unwrap(),
            Event::Ignored(_)
        ));
    }
}
