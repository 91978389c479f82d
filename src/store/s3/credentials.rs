//! Where an S3 store's keys come from: a file of its own (plain or INI) or the standard
//! environment variables — never inline in the configuration.

use super::*;

/// Where credentials come from; never inline in the configuration.
#[derive(Clone, Debug)]
pub enum CredentialSource {
    /// A file; see [`Credentials::from_file`] for its format.
    File(PathBuf),
    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and optional `AWS_SESSION_TOKEN`.
    Env,
}

/// An access key pair (and optional session token).
#[derive(Clone)]
pub struct Credentials {
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: String,
    /// Session token of temporary credentials.
    pub session_token: Option<String>,
}

impl std::fmt::Debug for Credentials {
    // The secret never reaches a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

impl Credentials {
    /// Loads credentials for store `store` from `source`.
    pub fn load(store: &str, source: &CredentialSource) -> Result<Credentials, S3Error> {
        match source {
            CredentialSource::File(p) => Credentials::from_file(store, p),
            CredentialSource::Env => Credentials::from_env(store),
        }
    }

    /// Reads a credentials file: `key = value` lines, `#` or `;` comments, optionally in
    /// INI sections like `~/.aws/credentials` (then the `[default]` section is used, or the
    /// only section there is). Keys: `aws_access_key_id` (or `access_key_id`),
    /// `aws_secret_access_key` (or `secret_access_key`), optional `aws_session_token` (or
    /// `session_token`). Values may be quoted.
    pub fn from_file(store: &str, path: &Path) -> Result<Credentials, S3Error> {
        let err = |detail: String| S3Error::Credentials {
            store: store.into(),
            origin: path.display().to_string(),
            detail,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        Credentials::parse(&text).map_err(err)
    }

    /// Parses the text of a credentials file (see [`Credentials::from_file`]).
    pub fn parse(text: &str) -> Result<Credentials, String> {
        // (section, key, value) for every assignment; section "" before any header.
        let mut pairs = Vec::new();
        let mut sections = Vec::new();
        let mut section = String::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = name.trim().to_string();
                sections.push(section.clone());
                continue;
            }
            let (k, v) = line
                .split_once('=')
                .ok_or_else(|| format!("line {}: expected key = value", n + 1))?;
            let v = v.trim().trim_matches('"').trim_matches('\'');
            let k = k.trim().to_ascii_lowercase();
            pairs.push((section.clone(), k, v.to_string()));
        }
        let chosen = match sections.as_slice() {
            [] => String::new(),
            [only] => only.clone(),
            _ if sections.iter().any(|s| s == "default") => "default".into(),
            _ => return Err("several sections and none is [default]".into()),
        };
        let get = |names: &[&str]| {
            pairs
                .iter()
                .find(|(s, k, _)| s == &chosen && names.contains(&k.as_str()))
                .map(|(_, _, v)| v.clone())
        };
        Ok(Credentials {
            access_key_id: get(&["aws_access_key_id", "access_key_id"])
                .ok_or("no aws_access_key_id")?,
            secret_access_key: get(&["aws_secret_access_key", "secret_access_key"])
                .ok_or("no aws_secret_access_key")?,
            session_token: get(&["aws_session_token", "session_token"]),
        })
    }

    /// Reads `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and optional `AWS_SESSION_TOKEN`.
    pub fn from_env(store: &str) -> Result<Credentials, S3Error> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let missing = |k: &str| S3Error::Credentials {
            store: store.into(),
            origin: "the environment".into(),
            detail: format!("{k} is not set"),
        };
        Ok(Credentials {
            access_key_id: var("AWS_ACCESS_KEY_ID").ok_or_else(|| missing("AWS_ACCESS_KEY_ID"))?,
            secret_access_key: var("AWS_SECRET_ACCESS_KEY")
                .ok_or_else(|| missing("AWS_SECRET_ACCESS_KEY"))?,
            session_token: var("AWS_SESSION_TOKEN"),
        })
    }
}
