//! What operators and consumers put on files: pins (`retain`/`unretain`), tags, and leases
//! (`lease`/`renew`/`release`). Each argument gets its own result; a pin waits for the pin
//! gate, so it never lands between a chunk's re-check and its unlinks.

use super::*;

impl Engine {
    /// The active leases, compiled.
    pub fn lease_set(&self) -> Result<LeaseSet> {
        Ok(self.inuse.lease_set(&self.registry, self.lease_now())?)
    }

    /// Takes a lease on a path or glob (`STORE:hls/s1/**`, `/abs/root/hls/s1/*.ts`) for `ttl`.
    /// A glob covers files that appear later too.
    /// A socket client (`Caller::Client`) holds at most `max_leases_per_uid` at a time.
    pub fn lease(
        &self,
        arg: &str,
        ttl: crate::units::Dur,
        holder: &str,
        caller: Caller,
    ) -> Result<Lease> {
        if ttl.0.is_zero() || ttl.0 > MAX_LEASE {
            return Err(EngineError::BadInput(format!(
                "lease ttl {ttl} must be above 0s and at most 30d (renew for longer)"
            )));
        }
        if holder.is_empty() || holder.len() > 64 || holder.chars().any(char::is_control) {
            return Err(EngineError::BadInput(
                "lease holder must be 1 to 64 printable characters".into(),
            ));
        }
        let rt = self.runtime();
        let glob = arg.contains(['*', '?', '[', '{']);
        let (store, rel) = rt.resolve(arg)?;
        // A literal name is kept in the spelling (exact, whatever its bytes); a glob is
        // text for globset, which matches bytes but cannot name one that is not UTF-8.
        let pattern = match (glob, rel.to_str()) {
            (false, _) => crate::spell::path(&rel).into_owned(),
            (true, Some(g)) => g.to_string(),
            (true, None) => {
                return Err(EngineError::BadInput(format!(
                    "glob \"{}\" names bytes that are not UTF-8: a glob cannot; match them with '?' or '*', or lease the file by its exact name",
                    crate::spell::show(&rel)
                )));
            }
        };
        if glob {
            // Bounded before it is compiled: a big alternation costs milliseconds and
            // megabytes per glob, and a uid may hold max_leases_per_uid of them.
            crate::inuse::leases::check_pattern(&pattern).map_err(EngineError::BadInput)?;
            crate::config::glob_set(std::slice::from_ref(&pattern)).map_err(|e| {
                EngineError::BadInput(format!("bad glob {pattern:?}: {}", e.kind()))
            })?;
        }
        // Leases run on CLOCK_BOOTTIME (continued from the last trusted wall time).
        let now = self.lease_now();
        // Like a pin: no chunk is between its re-check and its unlinks while a lease lands.
        let _gate = self.pin_gate.lock().expect("pin gate");
        if let Caller::Client(uid) = caller {
            let max = u64::from(rt.config.daemon.max_leases_per_uid);
            if self.reg().count_leases(uid, now)? >= max {
                return Err(EngineError::TooMany(format!(
                    "uid {uid} already holds {max} active leases (max_leases_per_uid); release some first"
                )));
            }
        }
        let lease = self.reg().add_lease(Lease {
            id: 0,
            store: store.clone(),
            pattern,
            glob,
            holder: holder.to_string(),
            created: now,
            expires: now.saturating_add(ttl.as_nanos_i64()),
            owner: Some(caller.owner_uid()),
        })?;
        self.inuse.leases_changed();
        info!(action = "lease", owner = caller.owner_uid(), store = %store, path = %lease.pattern, holder, lease = lease.id, "lease {} on {store}:{} by {holder} until {}", lease.id, lease.pattern, fmt_time(lease.expires));
        Ok(lease)
    }

    /// Extends lease `id` to `ttl` from now.
    pub fn renew(&self, id: i64, ttl: crate::units::Dur, caller: Caller) -> Result<Lease> {
        if ttl.0.is_zero() || ttl.0 > MAX_LEASE {
            return Err(EngineError::BadInput(format!(
                "lease ttl {ttl} must be above 0s and at most 30d"
            )));
        }
        let now = self.lease_now();
        self.check_lease_owner(id, now, caller)?;
        let renewed = self
            .reg()
            .renew_lease(id, now.saturating_add(ttl.as_nanos_i64()), now)?;
        self.inuse.leases_changed();
        renewed.ok_or_else(|| {
            EngineError::BadInput(format!("no active lease {id} (expired or released)"))
        })
    }

    /// Ends lease `id`.
    pub fn release(&self, id: i64, caller: Caller) -> Result<()> {
        self.check_lease_owner(id, self.lease_now(), caller)?;
        let released = self.reg().release_lease(id)?;
        self.inuse.leases_changed();
        if !released {
            return Err(EngineError::BadInput(format!(
                "no active lease {id} (expired or released)"
            )));
        }
        info!(action = "release", lease = id, "lease {id} released");
        Ok(())
    }

    /// A socket client may renew and release only the leases it took.
    fn check_lease_owner(&self, id: i64, now: Nanos, caller: Caller) -> Result<()> {
        let Caller::Client(uid) = caller else {
            return Ok(());
        };
        match self.reg().lease_owner(id, now)? {
            Some(owner) if owner != Some(uid) => Err(EngineError::Forbidden(format!(
                "lease {id} was taken by another user; uid {uid} may renew and release only its own leases"
            ))),
            _ => Ok(()),
        }
    }

    /// Active leases.
    pub fn leases(&self) -> Result<Vec<Lease>> {
        let now = self.lease_now();
        Ok(self.reg().leases(now)?)
    }

    /// A glob argument (`media:rec/2026-12-*/**`) as the files it names now: the registry's
    /// entries (for unretain, the pinned paths) that match it, as `STORE:KEY` arguments.
    /// None: not a glob (or a file by that very name exists). Some(Err): why it names none.
    fn expand(
        &self,
        rt: &Runtime,
        arg: &str,
        mark: &Mark,
    ) -> Result<Option<std::result::Result<Vec<String>, String>>> {
        if !arg.contains(['*', '?', '[', '{']) {
            return Ok(None);
        }
        let Ok((store, pattern)) = rt.resolve(arg) else {
            return Ok(None); // resolve's own refusal comes with the literal
        };
        if self.stat_any(rt, &store, &pattern)?.is_some() {
            return Ok(None);
        }
        let Some(text) = pattern.to_str() else {
            return Ok(Some(Err(
                "a glob must be UTF-8 text; match odd bytes with '?' or '*'".into(),
            )));
        };
        let set = match crate::config::glob_set(&[text.to_string()]) {
            Ok(s) => s,
            Err(e) => return Ok(Some(Err(format!("bad glob {text:?}: {}", e.kind())))),
        };
        let candidates: Vec<PathBuf> = match mark {
            Mark::Retain(false) => self.reg().pinned_paths(&store)?.into_iter().collect(),
            _ => self.reg().paths(&store)?,
        };
        let mut list: Vec<String> = candidates
            .iter()
            .filter(|p| set.is_match(p))
            .map(|p| format!("{store}:{}", crate::spell::path(p)))
            .collect();
        list.sort();
        if list.is_empty() {
            return Ok(Some(Err(format!(
                "{store}:{text} matches no file mediaretain knows"
            ))));
        }
        Ok(Some(Ok(list)))
    }

    /// Pins, unpins or tags each path; every argument gets its own result. A glob names
    /// the files that match it now (see [`Engine::expand`]).
    pub fn mark(&self, args: &[String], mark: &Mark, trigger: &str) -> Result<Vec<MarkResult>> {
        let rt = self.runtime();
        let now = self.now();
        if let Mark::Tags { add, remove } = mark
            && let Some(bad) = add.iter().chain(remove).find_map(|t| check_tag(t).err())
        {
            return Err(EngineError::BadInput(bad));
        }
        let mut out = Vec::new();
        let mut expanded = Vec::new();
        for arg in args {
            match self.expand(&rt, arg, mark)? {
                Some(Ok(list)) => expanded.extend(list),
                Some(Err(why)) => out.push(MarkResult {
                    arg: arg.clone(),
                    store: None,
                    path: None,
                    changed: false,
                    error: Some(why),
                }),
                None => expanded.push(arg.clone()),
            }
        }
        for arg in &expanded {
            let result = |store: Option<String>,
                          path: Option<PathBuf>,
                          changed,
                          error: Option<String>| MarkResult {
                arg: arg.clone(),
                store,
                path,
                changed,
                error,
            };
            let (store, path) = match rt.resolve(arg) {
                Ok(x) => x,
                Err(e) => {
                    out.push(result(None, None, false, Some(e.to_string())));
                    continue;
                }
            };
            let on_disk = self.stat_any(&rt, &store, &path)?;
            let known = self.reg().get(&store, &path)?.is_some();
            let unpinning = matches!(mark, Mark::Retain(false));
            if !known && !unpinning {
                // Marks need the file: record it now if it is on disk but not yet seen.
                let Some(meta) = on_disk else {
                    out.push(result(
                        Some(store),
                        Some(path),
                        false,
                        Some("no such file in the store".into()),
                    ));
                    continue;
                };
                let class_of = |p: &Path| rt.classifier.classify(&store, p).map(str::to_string);
                self.reg()
                    .upsert(&store, std::slice::from_ref(&meta), now, &class_of)?;
            }
            let (changed, action, reason) = match mark {
                Mark::Retain(pin) => {
                    let _gate = self.pin_gate.lock().expect("pin gate");
                    // Looked at again under the gate: a pass may have deleted it meanwhile.
                    if *pin && self.stat_any(&rt, &store, &path)?.is_none() {
                        let why =
                            "no such file in the store (see `explain` if it was just deleted)";
                        out.push(result(Some(store), Some(path), false, Some(why.into())));
                        continue;
                    }
                    let changed = self.reg().set_retained(&store, &path, *pin, now)?;
                    if *pin {
                        (changed, "retain", "pinned by an operator".to_string())
                    } else {
                        (
                            changed,
                            "unretain",
                            "pin removed by an operator".to_string(),
                        )
                    }
                }
                Mark::Tags { add, remove } => {
                    let changed = self
                        .reg()
                        .set_tags(&store, &path, add, remove)?
                        .unwrap_or(false);
                    (
                        changed,
                        "tag",
                        format!("tags +[{}] -[{}]", add.join(" "), remove.join(" ")),
                    )
                }
            };
            if changed {
                info!(action, store = %store, path = %crate::spell::show(&path), reason = %reason, trigger, "{action} {store}:{}", crate::spell::show(&path));
                let rec = AuditRecord {
                    at: now,
                    store: store.clone(),
                    path: path.clone(),
                    action: action.into(),
                    outcome: "done".into(),
                    class: rt.classifier.classify(&store, &path).map(str::to_string),
                    rule: None,
                    reason,
                    trigger: trigger.into(),
                    bytes: None,
                };
                self.reg().record(&[], &[rec])?;
            }
            out.push(result(Some(store), Some(path), changed, None));
        }
        // The pins file's appends made durable once, before the answer (issue 23).
        self.reg().sync_pins()?;
        Ok(out)
    }
}

/// Longest lease a single call grants (a holder renews for longer).
const MAX_LEASE: std::time::Duration = std::time::Duration::from_secs(30 * 86400);

/// What an operator changes on paths.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum Mark {
    /// Pin (true) or unpin (false).
    Retain(bool),
    /// Add and remove free labels such as `event=match-42`.
    Tags {
        /// Tags to add.
        add: Vec<String>,
        /// Tags to remove.
        remove: Vec<String>,
    },
}

/// Checks a tag: non-empty, at most 128 bytes, no whitespace or control characters.
pub fn check_tag(t: &str) -> std::result::Result<(), String> {
    if t.is_empty() || t.len() > 128 || t.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "bad tag {t:?}: 1 to 128 characters, no spaces (like event=match-42)"
        ));
    }
    Ok(())
}

/// The result of retain/unretain/tag for one path.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MarkResult {
    /// The argument as given.
    pub arg: String,
    /// Resolved store.
    pub store: Option<String>,
    /// Resolved path.
    #[serde(with = "crate::spell::serde_opt_path")]
    pub path: Option<PathBuf>,
    /// Whether anything changed.
    pub changed: bool,
    /// Set when the path was refused.
    pub error: Option<String>,
}
