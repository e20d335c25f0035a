//! [`Bodies`] on an S3-compatible object store (Garage, Ceph RGW, MinIO,
//! AWS S3): one object per body, named by the hex of its store key (so
//! names sort as keys do and a user's bodies share a prefix). Requests
//! are signed by `rusty-s3` (no I/O of its own) and sent by `ureq`
//! (blocking, as the store's callers are); bodies are immutable, so a
//! bounded in-memory cache ([`quick_cache`]) keeps snapshot folders that
//! are read again off the network.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};

use super::{Bodies, EngineError, Reader};

/// How long a signed request stays valid (it is sent at once).
const SIGNED_FOR: Duration = Duration::from_secs(300);

/// Objects fetched at once when many bodies are read (a FETCH of a
/// folder): round trips, not bandwidth, bound a serial read. A whole-folder
/// `BODY.PEEK[]` of 10,000 on a three-node Garage: 24.4 s with 8, 8.5 s
/// with 32 (`--only tm` on the cluster store, issue 16).
const PARALLEL_GETS: usize = 32;

/// One body being read by [`Bodies::read`]'s threads.
type Slot = Mutex<Option<Result<Option<Arc<Vec<u8>>>, EngineError>>>;

/// What the engine needs to reach the bucket.
#[derive(Clone)]
pub struct Settings {
    /// `http(s)://host:port` of the S3 API.
    pub endpoint: String,
    pub region: String,
    pub bucket: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    /// Put before every object name: stores (or tests) sharing a bucket.
    pub prefix: String,
    /// Bytes of bodies kept in memory.
    pub cache_bytes: u64,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("bucket", &self.bucket)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"(set)")
            .field("prefix", &self.prefix)
            .field("cache_bytes", &self.cache_bytes)
            .finish()
    }
}

#[derive(Clone)]
struct Weight;
impl quick_cache::Weighter<Vec<u8>, Arc<Vec<u8>>> for Weight {
    fn weight(&self, key: &Vec<u8>, value: &Arc<Vec<u8>>) -> u64 {
        (key.len() + value.len()) as u64
    }
}

/// A body not yet stored.
struct Pending {
    value: Arc<Vec<u8>>,
    /// Its last upload failed (it waits for [`Bodies::stored`] to ask
    /// again).
    failed: Option<String>,
    queued: bool,
}

/// Puts waiting for the uploaders, and what became of them.
#[derive(Default)]
struct Uploads {
    /// Bodies not yet stored, readable meanwhile.
    pending: std::collections::HashMap<Vec<u8>, Pending>,
    queue: std::collections::VecDeque<Vec<u8>>,
    bytes: u64,
    closing: bool,
}

impl Uploads {
    fn failures(&self) -> usize {
        self.pending.values().filter(|p| p.failed.is_some()).count()
    }
}

/// What the uploader threads share with the engine.
struct Inner {
    bucket: Bucket,
    prefix: String,
    credentials: Credentials,
    agent: ureq::Agent,
    cache: quick_cache::sync::Cache<Vec<u8>, Arc<Vec<u8>>, Weight>,
    uploads: Mutex<Uploads>,
    changed: Condvar,
}

pub struct S3 {
    inner: Arc<Inner>,
}

/// Uploads at once. An object store answers a PUT in tens of milliseconds
/// (AWS S3; Garage replicating to three nodes), so a snapshot storing its
/// bodies one by one would be bound by that latency, not by bandwidth.
const UPLOADERS: usize = 16;

/// Bytes of bodies waiting for upload at most: a snapshot's memory stays
/// bounded whatever the message sizes (puts wait beyond it).
const PENDING_BYTES: u64 = 32 * 1024 * 1024;

/// Attempts of one upload before it counts as failed.
const ATTEMPTS: usize = 3;

/// `call` tried up to [`ATTEMPTS`] times, a little apart: an object store
/// answers 503 while a node rejoins its cluster, and connections drop.
/// Every request here may be repeated (reads, deletes, and puts of bytes
/// named by their hash).
fn retried<T>(mut call: impl FnMut() -> Result<T, EngineError>) -> Result<T, EngineError> {
    let mut result = call();
    for _ in 1..ATTEMPTS {
        if result.is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
        result = call();
    }
    result
}

fn http(what: &str, e: ureq::Error) -> EngineError {
    EngineError::Objects(format!("{what}: {e}"))
}

/// The response of a request, `None` for 404; any other status outside
/// 2xx is an error carrying the object store's own `<Code>` and
/// `<Message>` (e.g. `QuotaExceeded`), so the log says why.
fn answer(
    what: &str,
    sent: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> Result<Option<ureq::http::Response<ureq::Body>>, EngineError> {
    let mut resp = sent.map_err(|e| http(what, e))?;
    let status = resp.status().as_u16();
    if (200..300).contains(&status) {
        return Ok(Some(resp));
    }
    if status == 404 {
        return Ok(None);
    }
    let text = resp
        .body_mut()
        .with_config()
        .limit(64 * 1024)
        .read_to_string()
        .unwrap_or_default();
    let tag = |name: &str| {
        let open = format!("<{name}>");
        let start = text.find(&open)? + open.len();
        let len = text.get(start..)?.find(&format!("</{name}>"))?;
        text.get(start..start + len).map(str::to_string)
    };
    Err(EngineError::Objects(format!(
        "{what}: HTTP {status} {} {}",
        tag("Code").unwrap_or_default(),
        tag("Message").unwrap_or_default()
    )))
}

fn object_name(prefix: &str, key: &[u8]) -> String {
    let mut s = String::with_capacity(prefix.len() + key.len() * 2);
    s.push_str(prefix);
    for b in key {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

fn key_of(name: &str) -> Option<Vec<u8>> {
    if !name.len().is_multiple_of(2) {
        return None;
    }
    (0..name.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(name.get(i..i + 2)?, 16).ok())
        .collect()
}

impl S3 {
    /// Checks the settings and that the bucket answers (a list of one key).
    pub fn connect(settings: &Settings) -> Result<Self, EngineError> {
        let endpoint = settings
            .endpoint
            .parse()
            .map_err(|e| EngineError::Objects(format!("endpoint {:?}: {e}", settings.endpoint)))?;
        let bucket = Bucket::new(
            endpoint,
            UrlStyle::Path,
            settings.bucket.clone(),
            settings.region.clone(),
        )
        .map_err(|e| EngineError::Objects(format!("bucket {:?}: {e}", settings.bucket)))?;
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(60)))
            .http_status_as_error(false)
            .max_idle_connections_per_host(UPLOADERS + PARALLEL_GETS)
            .build()
            .into();
        let items = (settings.cache_bytes / 16_384).max(16) as usize;
        let inner = Arc::new(Inner {
            bucket,
            prefix: settings.prefix.clone(),
            credentials: Credentials::new(settings.access_key_id.clone(), settings.secret_access_key.clone()),
            agent,
            cache: quick_cache::sync::Cache::with_weighter(items, settings.cache_bytes.max(1), Weight),
            uploads: Mutex::new(Uploads::default()),
            changed: Condvar::new(),
        });
        inner.list_page(None, 1)?;
        for i in 0..UPLOADERS {
            let inner = inner.clone();
            std::thread::Builder::new()
                .name(format!("store-s3-put-{i}"))
                .spawn(move || inner.upload_loop())?;
        }
        Ok(Self { inner })
    }
}

impl Drop for S3 {
    fn drop(&mut self) {
        if let Ok(mut u) = self.inner.uploads.lock() {
            u.closing = true;
        }
        self.inner.changed.notify_all();
    }
}

impl Inner {
    fn uploads(&self) -> Result<std::sync::MutexGuard<'_, Uploads>, EngineError> {
        self.uploads
            .lock()
            .map_err(|_| EngineError::Objects("upload state poisoned".into()))
    }

    /// One uploader: takes queued puts until the engine is dropped.
    fn upload_loop(&self) {
        loop {
            let (key, value) = {
                let Ok(mut u) = self.uploads.lock() else { return };
                loop {
                    if u.closing {
                        return;
                    }
                    if let Some(key) = u.queue.pop_front() {
                        if let Some(p) = u.pending.get_mut(&key) {
                            p.queued = false;
                            let value = p.value.clone();
                            break (key, value);
                        }
                        continue;
                    }
                    u = match self.changed.wait(u) {
                        Ok(u) => u,
                        Err(_) => return,
                    };
                }
            };
            let result = retried(|| self.put_now(&key, &value));
            let Ok(mut u) = self.uploads.lock() else { return };
            match result {
                Ok(()) => {
                    if u.pending.remove(&key).is_some() {
                        u.bytes = u.bytes.saturating_sub(value.len() as u64);
                    }
                    // Stored: reads find it in the cache, not over the network.
                    self.cache.insert(key, value);
                }
                Err(e) => {
                    if let Some(p) = u.pending.get_mut(&key) {
                        p.failed = Some(e.to_string());
                    }
                }
            }
            drop(u);
            self.changed.notify_all();
        }
    }

    fn put_now(&self, key: &[u8], value: &[u8]) -> Result<(), EngineError> {
        let url = self
            .bucket
            .put_object(Some(&self.credentials), &object_name(&self.prefix, key))
            .sign(SIGNED_FOR);
        answer("PUT", self.agent.put(url.as_str()).send(value))?
            .ok_or_else(|| EngineError::Objects("PUT: HTTP 404 (no such bucket?)".into()))?;
        Ok(())
    }

    fn get(&self, key: &[u8]) -> Result<Option<Arc<Vec<u8>>>, EngineError> {
        if let Some(hit) = self.uploads()?.pending.get(key).map(|p| p.value.clone()) {
            return Ok(Some(hit));
        }
        if let Some(hit) = self.cache.get(key) {
            return Ok(Some(hit));
        }
        let fetch = || {
            let url = self
                .bucket
                .get_object(Some(&self.credentials), &object_name(&self.prefix, key))
                .sign(SIGNED_FOR);
            let Some(mut resp) = answer("GET", self.agent.get(url.as_str()).call())? else {
                return Ok(None);
            };
            resp.body_mut()
                .with_config()
                .limit(u64::MAX)
                .read_to_vec()
                .map(Some)
                .map_err(|e| http("GET body", e))
        };
        let Some(body) = retried(fetch)? else {
            return Ok(None);
        };
        let body = Arc::new(body);
        self.cache.insert(key.to_vec(), body.clone());
        Ok(Some(body))
    }

    /// One page of the listing: (name, size) and the token of the next.
    #[allow(clippy::type_complexity)]
    fn list_page(&self, token: Option<&str>, max: usize) -> Result<(Vec<(String, u64)>, Option<String>), EngineError> {
        let mut action = self.bucket.list_objects_v2(Some(&self.credentials));
        action.with_max_keys(max);
        if !self.prefix.is_empty() {
            action.with_prefix(self.prefix.as_str());
        }
        if let Some(t) = token {
            action.with_continuation_token(t);
        }
        let url = action.sign(SIGNED_FOR);
        let text = retried(|| {
            answer("LIST", self.agent.get(url.as_str()).call())?
                .ok_or_else(|| EngineError::Objects("LIST: HTTP 404 (no such bucket?)".into()))?
                .body_mut()
                .read_to_string()
                .map_err(|e| http("LIST body", e))
        })?;
        let parsed = rusty_s3::actions::ListObjectsV2::parse_response(&text)
            .map_err(|e| EngineError::Objects(format!("LIST answer: {e}")))?;
        let items = parsed
            .contents
            .into_iter()
            .map(|c| (c.key, c.size.unwrap_or(0)))
            .collect();
        Ok((items, parsed.next_continuation_token))
    }
}

impl Bodies for S3 {
    /// Queues the upload and returns, waiting only while too many bytes
    /// are queued. While uploads fail and the queue is full, it refuses
    /// (the job fails and is retried) rather than wait for an object store
    /// that is down.
    fn put(&self, key: &[u8], value: &[u8]) -> Result<(), EngineError> {
        let inner = &self.inner;
        let mut u = inner.uploads()?;
        if u.pending.contains_key(key) {
            return Ok(());
        }
        while u.bytes > PENDING_BYTES {
            if u.failures() > 0 {
                return Err(EngineError::Objects(format!(
                    "{} bodies could not be stored; not queueing more",
                    u.failures()
                )));
            }
            u = inner
                .changed
                .wait(u)
                .map_err(|_| EngineError::Objects("upload state poisoned".into()))?;
        }
        u.pending.insert(
            key.to_vec(),
            Pending {
                value: Arc::new(value.to_vec()),
                failed: None,
                queued: true,
            },
        );
        u.queue.push_back(key.to_vec());
        u.bytes += value.len() as u64;
        drop(u);
        inner.changed.notify_all();
        Ok(())
    }

    fn stored(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<String>>, EngineError> {
        let inner = &self.inner;
        let mut u = inner.uploads()?;
        // Failed ones named here get another round.
        let mut retry = Vec::new();
        for k in keys {
            if let Some(p) = u.pending.get_mut(k) {
                if p.failed.take().is_some() && !p.queued {
                    p.queued = true;
                    retry.push(k.clone());
                }
            }
        }
        u.queue.extend(retry);
        inner.changed.notify_all();
        loop {
            let busy = keys
                .iter()
                .any(|k| u.pending.get(k).is_some_and(|p| p.failed.is_none()));
            if !busy {
                break;
            }
            u = inner
                .changed
                .wait(u)
                .map_err(|_| EngineError::Objects("upload state poisoned".into()))?;
        }
        Ok(keys
            .iter()
            .map(|k| u.pending.get(k).map(|p| p.failed.clone().unwrap_or_default()))
            .collect())
    }

    fn read(&self, keys: &[Vec<u8>], _verify: bool, each: &mut Reader<'_>) -> Result<(), EngineError> {
        if keys.len() <= 1 {
            for (i, k) in keys.iter().enumerate() {
                each(i, self.inner.get(k)?.as_deref().map(Vec::as_slice))?;
            }
            return Ok(());
        }
        // Fetched by a few threads at once, handed over in order.
        let slots: Vec<Slot> = keys.iter().map(|_| Mutex::new(None)).collect();
        let next = AtomicUsize::new(0);
        std::thread::scope(|scope| {
            for _ in 0..PARALLEL_GETS.min(keys.len()) {
                scope.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let (Some(k), Some(slot)) = (keys.get(i), slots.get(i)) else {
                        return;
                    };
                    let got = self.inner.get(k);
                    if let Ok(mut s) = slot.lock() {
                        *s = Some(got);
                    }
                });
            }
        });
        for (i, slot) in slots.into_iter().enumerate() {
            let got = slot
                .into_inner()
                .map_err(|_| EngineError::Objects("a reader thread panicked".into()))?
                .ok_or_else(|| EngineError::Objects("a body was not read".into()))??;
            each(i, got.as_deref().map(Vec::as_slice))?;
        }
        Ok(())
    }

    fn visit(&self, each: &mut dyn FnMut(&[u8], u64)) -> Result<(), EngineError> {
        let mut token: Option<String> = None;
        loop {
            let (items, next) = self.inner.list_page(token.as_deref(), 1000)?;
            for (name, size) in items {
                // Objects not named by this engine are not the store's.
                if let Some(key) = name.strip_prefix(self.inner.prefix.as_str()).and_then(key_of) {
                    each(&key, size);
                }
            }
            match next {
                Some(t) => token = Some(t),
                None => return Ok(()),
            }
        }
    }

    fn delete(&self, keys: &[Vec<u8>]) -> Result<(), EngineError> {
        let inner = &self.inner;
        for k in keys {
            inner.cache.remove(k);
            let url = inner
                .bucket
                .delete_object(Some(&inner.credentials), &object_name(&inner.prefix, k))
                .sign(SIGNED_FOR);
            retried(|| answer("DELETE", inner.agent.delete(url.as_str()).call()))?;
        }
        Ok(())
    }

    fn compact(&self) -> Result<(), EngineError> {
        Ok(())
    }

    fn probe(&self) -> Result<(), EngineError> {
        // Not hex, so never taken for a body by `visit`.
        let inner = &self.inner;
        let url = inner
            .bucket
            .put_object(Some(&inner.credentials), &format!("{}probe", inner.prefix))
            .sign(SIGNED_FOR);
        answer(
            "PUT probe",
            inner
                .agent
                .put(url.as_str())
                .send(&jiff::Timestamp::now().as_second().to_be_bytes()[..]),
        )?
        .ok_or_else(|| EngineError::Objects("PUT probe: HTTP 404 (no such bucket?)".into()))?;
        Ok(())
    }

    fn stats(&self) -> Result<(u64, u64), EngineError> {
        let (mut count, mut bytes) = (0, 0);
        self.visit(&mut |_, size| {
            count += 1;
            bytes += size;
        })?;
        Ok((count, bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_names_are_the_keys_in_hex() {
        let key = b"alice\0\x00\xff\x10".to_vec();
        assert_eq!(object_name("", &key), "616c6963650000ff10");
        assert_eq!(object_name("t1/", &key), "t1/616c6963650000ff10");
        assert_eq!(key_of(&object_name("", &key)), Some(key));
        assert_eq!(key_of("abc"), None);
        assert_eq!(key_of("zz"), None);
    }
}
