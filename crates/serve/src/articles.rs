//! Article metadata and expiry: what may still be recommended.
//!
//! Articles are registered with `PUT /v1/articles` (published time, optional category and
//! expiry). An article is **expired** when its explicit expiry has passed, or when `max_age` has
//! passed since it was published — or, when its publish time is unknown, since its first click
//! seen by this node. "Now" is the serving node's event-time watermark (the newest click time it
//! ingested), so replays and backfills expire articles as live traffic would; before any click is
//! seen nothing expires.
//!
//! Persistence (format v1): registrations are appended to `<dir>/articles.ndjson`, one JSON
//! object per line (`{"article_id","published_ms","category","expires_ms"}`), fsynced before the
//! request is answered, and replayed at start (a later line for the same id wins). First-click
//! times are memory-only (at most `MAX_FIRST_CLICKS`; beyond it new articles are not tracked and
//! fall back to "never expires by age" until registered).

use std::{
    collections::HashMap,
    fs::{File, OpenOptions},
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
    sync::{Mutex, RwLock},
};

use serde::{Deserialize, Serialize};

/// First-click times tracked for unregistered articles.
const MAX_FIRST_CLICKS: usize = 2_000_000;

/// What is known about one article.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArticleMeta {
    pub article_id: String,
    pub published_ms: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub category: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub expires_ms: Option<i64>,
}

/// Registered articles and first clicks, with the expiry rule.
#[derive(Debug)]
pub struct ArticleRegistry {
    max_age_ms: i64,
    registered: RwLock<HashMap<String, ArticleMeta>>,
    first_clicks: RwLock<HashMap<String, i64>>,
    log: Mutex<Option<(PathBuf, File)>>,
}

/// Why the registry could not be opened or written.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("article registry {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("article registry {path} line {line}: {reason}")]
    Corrupt {
        path: String,
        line: usize,
        reason: String,
    },
}

impl ArticleRegistry {
    /// An in-memory registry (tests, or nodes that do not keep registrations).
    pub fn in_memory(max_age_ms: i64) -> ArticleRegistry {
        ArticleRegistry {
            max_age_ms,
            registered: RwLock::default(),
            first_clicks: RwLock::default(),
            log: Mutex::new(None),
        }
    }

    /// Opens (or creates) the registry persisted in `dir`, replaying its log.
    pub fn open(dir: &Path, max_age_ms: i64) -> Result<ArticleRegistry, RegistryError> {
        let path = dir.join("articles.ndjson");
        let io = |source| RegistryError::Io {
            path: path.display().to_string(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let registry = ArticleRegistry::in_memory(max_age_ms);
        if path.exists() {
            let reader = BufReader::new(File::open(&path).map_err(io)?);
            let mut registered = registry
                .registered
                .write()
                .unwrap_or_else(|p| p.into_inner());
            for (index, line) in reader.lines().enumerate() {
                let line = line.map_err(io)?;
                if line.trim().is_empty() {
                    continue;
                }
                let meta: ArticleMeta =
                    serde_json::from_str(&line).map_err(|error| RegistryError::Corrupt {
                        path: path.display().to_string(),
                        line: index + 1,
                        reason: error.to_string(),
                    })?;
                registered.insert(meta.article_id.clone(), meta);
            }
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io)?;
        *registry.log.lock().unwrap_or_else(|p| p.into_inner()) = Some((path, file));
        Ok(registry)
    }

    /// Registers (or updates) articles; durable before it returns when the registry is persisted.
    pub fn register(&self, articles: Vec<ArticleMeta>) -> Result<(), RegistryError> {
        if let Some((path, file)) = self.log.lock().unwrap_or_else(|p| p.into_inner()).as_mut() {
            let mut text = String::new();
            for meta in &articles {
                text.push_str(&serde_json::to_string(meta).unwrap_or_default());
                text.push('\n');
            }
            let io = |source| RegistryError::Io {
                path: path.display().to_string(),
                source,
            };
            file.write_all(text.as_bytes()).map_err(io)?;
            file.sync_data().map_err(io)?;
        }
        let mut registered = self.registered.write().unwrap_or_else(|p| p.into_inner());
        for meta in articles {
            registered.insert(meta.article_id.clone(), meta);
        }
        Ok(())
    }

    /// Notes a click, so an unregistered article's age can start at its first click.
    pub fn observe_click(&self, article_id: &str, ts_ms: i64) {
        if let Some(first) = self
            .first_clicks
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(article_id)
            && *first <= ts_ms
        {
            return;
        }
        let mut first_clicks = self.first_clicks.write().unwrap_or_else(|p| p.into_inner());
        if first_clicks.len() >= MAX_FIRST_CLICKS && !first_clicks.contains_key(article_id) {
            return;
        }
        let first = first_clicks.entry(article_id.to_owned()).or_insert(ts_ms);
        *first = (*first).min(ts_ms);
    }

    /// True when the article may not be served at `now_ms` (see the module doc).
    pub fn is_expired(&self, article_id: &str, now_ms: i64) -> bool {
        // Before the first click nothing expires: skip the lookups on the hot path.
        if now_ms <= 0 {
            return false;
        }
        let registered = self.registered.read().unwrap_or_else(|p| p.into_inner());
        match registered.get(article_id) {
            Some(meta) if meta.expires_ms.is_some() || meta.published_ms.is_some() => {
                self.expired(meta.published_ms, meta.expires_ms, now_ms)
            }
            _ => {
                let first_click = self
                    .first_clicks
                    .read()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(article_id)
                    .copied();
                self.expired(first_click, None, now_ms)
            }
        }
    }

    fn expired(&self, born_ms: Option<i64>, expires_ms: Option<i64>, now_ms: i64) -> bool {
        if now_ms <= 0 {
            return false;
        }
        match expires_ms {
            Some(expires) => now_ms >= expires,
            None => born_ms.is_some_and(|born| now_ms >= born + self.max_age_ms),
        }
    }

    /// The newest registered articles already published and not expired at `now_ms`, newest first.
    pub fn latest(&self, now_ms: i64, k: usize) -> Vec<ArticleMeta> {
        let registered = self.registered.read().unwrap_or_else(|p| p.into_inner());
        let mut fresh: Vec<&ArticleMeta> = registered
            .values()
            .filter(|meta| {
                meta.published_ms
                    .is_some_and(|published| now_ms <= 0 || published <= now_ms)
            })
            .filter(|meta| !self.expired(meta.published_ms, meta.expires_ms, now_ms))
            .collect();
        fresh.sort_by(|a, b| {
            b.published_ms
                .cmp(&a.published_ms)
                .then(a.article_id.cmp(&b.article_id))
        });
        fresh.into_iter().take(k).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000;

    fn meta(id: &str, published: Option<i64>, expires: Option<i64>) -> ArticleMeta {
        ArticleMeta {
            article_id: id.into(),
            published_ms: published,
            category: None,
            expires_ms: expires,
        }
    }

    #[test]
    fn expiry_rules() {
        let registry = ArticleRegistry::in_memory(48 * HOUR);
        registry
            .register(vec![
                meta("old", Some(0), None),
                meta("explicit", Some(100 * HOUR), Some(101 * HOUR)),
                meta("new", Some(100 * HOUR), None),
            ])
            .unwrap();
        registry.observe_click("unregistered", 10 * HOUR);
        registry.observe_click("unregistered", 60 * HOUR); // later clicks do not move the start
        let now = 100 * HOUR + 1;
        assert!(registry.is_expired("old", now));
        assert!(!registry.is_expired("explicit", now));
        assert!(registry.is_expired("explicit", 101 * HOUR));
        assert!(!registry.is_expired("new", now));
        assert!(
            registry.is_expired("unregistered", now),
            "48 h after its first click"
        );
        assert!(!registry.is_expired("never-seen", now));
        assert!(
            !registry.is_expired("old", 0),
            "no watermark yet: nothing expires"
        );
        let latest: Vec<String> = registry
            .latest(now, 5)
            .into_iter()
            .map(|m| m.article_id)
            .collect();
        assert_eq!(latest, ["explicit", "new"]);
    }

    #[test]
    fn registrations_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let registry = ArticleRegistry::open(dir.path(), HOUR).unwrap();
        registry.register(vec![meta("a", Some(5), None)]).unwrap();
        registry
            .register(vec![meta("a", Some(7), Some(9))])
            .unwrap();
        drop(registry);
        let reopened = ArticleRegistry::open(dir.path(), HOUR).unwrap();
        assert!(reopened.is_expired("a", 9));
        assert!(!reopened.is_expired("a", 8));
        std::fs::write(dir.path().join("articles.ndjson"), "{not json\n").unwrap();
        let error = ArticleRegistry::open(dir.path(), HOUR).unwrap_err();
        assert!(error.to_string().contains("line 1"), "{error}");
    }
}
