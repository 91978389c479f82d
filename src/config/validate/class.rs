//! One `[[class]]` table: its store, globs, lifecycle and limits, in-use settings,
//! offload, stream pattern and dedupe, each problem located at its key.

use super::*;

impl Validator<'_> {
    /// One `[[class]]`; `class_names` holds where each class name seen so far is.
    pub(super) fn class(
        &mut self,
        raw: Spanned<raw::ClassTable>,
        stores: &[Store],
        declared: &HashMap<String, Place>,
        class_names: &mut HashMap<String, Place>,
    ) -> Class {
        let c = raw.into_inner();
        let name = c.name.get_ref().clone();
        let lifecycle = *c.lifecycle.get_ref();
        let lifecycle_span = c.lifecycle.span();
        let ttl = c.ttl.as_ref().map(|v| *v.get_ref());
        let keep_for = c.keep_for.as_ref().map(|v| *v.get_ref());
        let max_count = c.max_count.as_ref().map(|v| *v.get_ref());
        let max_total = c.max_total.as_ref().map(|v| *v.get_ref());
        if name.is_empty() {
            self.err(c.name.span(), "class name must not be empty");
        } else if let Some(first) = class_names.get(&name) {
            let first = self.at(first);
            self.err(
                c.name.span(),
                format!("duplicate class name {name:?} (first defined at {first})"),
            );
        } else {
            class_names.insert(name.clone(), (self.cur, c.name.span()));
        }
        // A store that is declared but has its own error (a missing root) was reported
        // there: no knock-on "unknown store" for each of its classes.
        if !declared.contains_key(c.store.get_ref()) {
            let known: Vec<_> = stores.iter().map(|s| s.name.as_str()).collect();
            let hint = did_you_mean(c.store.get_ref(), known.iter().copied())
                .map(|k| format!("; did you mean {k:?}?"))
                .unwrap_or_default();
            self.err(
                c.store.span(),
                format!(
                    "class {name:?}: unknown store {:?}{hint} (stores: {})",
                    c.store.get_ref(),
                    known.join(", ")
                ),
            );
        }
        if c.patterns.get_ref().is_empty() {
            self.err(
                c.patterns.span(),
                format!("class {name:?}: match must list at least one glob"),
            );
        }
        let mut each_ok = true;
        for p in c.patterns.get_ref().iter().chain(c.exclude.get_ref()) {
            if let Err(e) = glob(p) {
                each_ok = false;
                let sp = if c.patterns.get_ref().contains(p) {
                    c.patterns.span()
                } else {
                    c.exclude.span()
                };
                self.err(sp, format!("class {name:?}: bad glob {p:?}: {}", e.kind()));
            } else if p.starts_with('/') {
                let sp = if c.patterns.get_ref().contains(p) {
                    c.patterns.span()
                } else {
                    c.exclude.span()
                };
                self.err(
                    sp,
                    format!("class {name:?}: glob {p:?} must be relative to the store root"),
                );
            }
        }
        // Each glob parses; together they must also compile, as the classifier does.
        for (list, key) in [(&c.patterns, "match"), (&c.exclude, "exclude")] {
            if each_ok && let Err(e) = glob_set(list.get_ref()) {
                self.err(
                        list.span(),
                        format!("class {name:?}: the {key} globs cannot be compiled (too large or nested too deeply): {}", e.kind()),
                    );
            }
        }
        // A key that is missing is reported at `lifecycle`, the key that needs it.
        match lifecycle {
            Lifecycle::Temporary => {
                if ttl.is_none() {
                    self.err(
                        lifecycle_span.clone(),
                        format!("class {name:?}: lifecycle \"temporary\" needs ttl"),
                    );
                }
                if let Some(k) = &c.keep_for {
                    self.err(k.span(), format!("class {name:?}: keep_for is for segment and recording classes; a temporary class uses ttl"));
                }
            }
            Lifecycle::Segment | Lifecycle::Recording => {
                if let Some(t) = &c.ttl {
                    self.err(t.span(), format!("class {name:?}: ttl is for temporary classes; a {lifecycle} class uses keep_for"));
                }
                if lifecycle == Lifecycle::Segment && keep_for.is_none() {
                    self.err(
                        lifecycle_span.clone(),
                        format!("class {name:?}: lifecycle \"segment\" needs keep_for"),
                    );
                }
            }
        }
        if c.part_suffixes
            .get_ref()
            .iter()
            .any(|x| x.is_empty() || x.contains('/'))
        {
            self.err(
                c.part_suffixes.span(),
                format!("class {name:?}: part_suffixes must be non-empty and contain no '/'"),
            );
        }
        for (key, zero) in [
            (
                "max_count",
                c.max_count
                    .as_ref()
                    .filter(|v| *v.get_ref() == 0)
                    .map(Spanned::span),
            ),
            (
                "max_total",
                c.max_total
                    .as_ref()
                    .filter(|v| v.get_ref().0 == 0)
                    .map(Spanned::span),
            ),
        ] {
            if let Some(at) = zero {
                self.err(
                    at,
                    format!(
                        "class {name:?}: {key} must be above 0 (a ttl of 0s expires files at once)"
                    ),
                );
            }
        }
        let offload_span = c.offload.as_ref().map(Spanned::span).unwrap_or(0..0);
        let offload = c.offload.map(Spanned::into_inner);
        if let Some(o) = &offload {
            // A store with its own error is not held against the class (no knock-on).
            let local = stores
                .iter()
                .find(|s| &s.name == c.store.get_ref())
                .is_none_or(Store::is_local);
            match stores.iter().find(|s| s.name == o.to) {
                None if declared.contains_key(&o.to) => {}
                None => self.err(
                    offload_span.clone(),
                    format!("class {name:?}: offload.to names unknown store {:?}", o.to),
                ),
                Some(t) if t.is_local() => self.err(
                    offload_span.clone(),
                    format!(
                        "class {name:?}: offload.to must name an S3 store; {:?} is local",
                        o.to
                    ),
                ),
                Some(_) if !local => self.err(
                    offload_span.clone(),
                    format!("class {name:?}: offload is for classes of local stores"),
                ),
                // Its keys are every box's: a copy there could land on another box's key.
                Some(t) if t.s3.as_ref().is_some_and(|l| l.shared) => self.err(
                    offload_span.clone(),
                    format!("class {name:?}: offload.to {:?} is a shared store; offload to this box's own (node-prefixed) store", o.to),
                ),
                Some(_) => {}
            }
        }
        let stream = c.stream.as_ref().and_then(|s| {
            template::StreamPattern::parse(s.get_ref())
                .map_err(|e| self.err(s.span(), format!("class {name:?}: {e}")))
                .ok()
        });
        if let Some(d) = &c.dedupe
            && stores
                .iter()
                .find(|s| &s.name == c.store.get_ref())
                .is_some_and(|s| !s.is_local())
        {
            self.err(
                d.span(),
                format!("class {name:?}: dedupe is for classes of local stores (files are hashed where they lie)"),
            );
        }
        Class {
            name,
            store: c.store.into_inner(),
            patterns: c.patterns.into_inner(),
            exclude: c.exclude.into_inner(),
            lifecycle,
            ttl,
            keep_for,
            max_count,
            max_total,
            age_from: c.age_from,
            quiet_period: c.quiet_period,
            protect_playlist_refs: c
                .protect_playlist_refs
                .unwrap_or(lifecycle == Lifecycle::Segment),
            part_suffixes: c.part_suffixes.into_inner(),
            min_keep: c.min_keep,
            pressure_priority: c.pressure_priority,
            offload,
            stream,
            dedupe: c.dedupe.map(Spanned::into_inner),
        }
    }
}
