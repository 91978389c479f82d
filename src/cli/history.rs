//! `history`: a page of the audit, newest first, as a table (time, outcome, store:path,
//! size, class, rule, trigger, reason) or `--json`.

use super::*;
use crate::engine::{History, HistoryRequest};

/// `mediaretain history`.
pub(super) async fn history(b: &Backend, req: HistoryRequest, json: bool) -> Result<(), Failure> {
    let uri = uri(&req);
    let h: History = b
        .ask(Method::GET, &uri, NONE, move |e| e.history(&req))
        .await?;
    show(json, &h, || render(&h))
}

/// `GET /v1/history` with the request as its query string.
fn uri(req: &HistoryRequest) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    let limit = req.limit.map(|l| l.to_string());
    for (k, v) in [
        ("since", &req.since),
        ("class", &req.class),
        ("rule", &req.rule),
        ("trigger", &req.trigger),
        ("path", &req.path),
        ("store", &req.store),
        ("outcome", &req.outcome),
        ("limit", &limit),
        ("before", &req.before),
    ] {
        if let Some(v) = v {
            q.append_pair(k, v);
        }
    }
    if req.no_segments {
        q.append_pair("no_segments", "true");
    }
    match q.finish() {
        s if s.is_empty() => "/v1/history".into(),
        s => format!("/v1/history?{s}"),
    }
}

fn render(h: &History) -> String {
    let mut o = String::new();
    if h.records.is_empty() {
        let _ = writeln!(o, "no audit records match");
    } else {
        let _ = writeln!(
            o,
            "{:<24} {:<8} {:<48} {:>10}  {:<14} {:<9} {:<9} REASON",
            "TIME", "OUTCOME", "PATH", "SIZE", "CLASS", "RULE", "TRIGGER"
        );
    }
    for r in &h.records {
        // An action other than a deletion says which (a pin, an offload).
        let outcome = match r.action.as_str() {
            "delete" => r.outcome.clone(),
            a => format!("{a} {}", r.outcome),
        };
        let _ = writeln!(
            o,
            "{:<24} {:<8} {:<48} {:>10}  {:<14} {:<9} {:<9} {}",
            fmt_time(r.at),
            outcome,
            loc(&r.store, &r.path),
            r.bytes.map(|b| ByteSize(b).to_string()).unwrap_or_default(),
            r.class.as_deref().unwrap_or("-"),
            r.rule.as_deref().unwrap_or("-"),
            r.trigger,
            r.reason
        );
    }
    if let Some(t) = h.searched_to {
        let _ = writeln!(
            o,
            "(read {} records back to {} without filling the page; older: --before {})",
            h.scanned,
            fmt_time(t),
            h.next_before.map(|n| n.to_string()).unwrap_or_default()
        );
    } else if let Some(n) = h.next_before {
        let _ = writeln!(o, "(more: --before {n})");
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_string_reads_back_as_the_request() {
        let req = HistoryRequest {
            since: Some("1h 30m".into()),
            path: Some("media:rec/a b+c/**".into()),
            limit: Some(7),
            no_segments: true,
            ..Default::default()
        };
        let u = uri(&req);
        let q = u.split_once('?').unwrap().1;
        let back: HistoryRequest = form_urlencoded::parse(q.as_bytes()).fold(
            HistoryRequest::default(),
            |mut r, (k, v)| {
                match &*k {
                    "since" => r.since = Some(v.into()),
                    "path" => r.path = Some(v.into()),
                    "limit" => r.limit = v.parse().ok(),
                    "no_segments" => r.no_segments = v == "true",
                    k => panic!("{k}"),
                }
                r
            },
        );
        assert_eq!(back, req);
        assert_eq!(uri(&HistoryRequest::default()), "/v1/history");
    }
}
