//! Spoken prompts media-svc plays itself (the recording announcement, the consent question, the
//! message prompt): text rendered by espeak-ng to 8 kHz mu-law in a voice close to the tenant's
//! agent voice, or the three-beep tone when espeak-ng is missing, fails or is too slow.
//! [`prompt`] never fails.
//!
//! Rendered prompts are cached in memory (bounded to [`CACHE_BYTES`], oldest out first) under the
//! SHA-256 of engine, voice and text ([`key`]), so a changed text or voice is a new entry and an
//! unchanged one is rendered once per process; and in the recordings' object store under
//! `prompts/<hex key>` ([`object_path`]), so replicas and restarts find it rendered (read within
//! [`STORE_TIMEOUT`]; written in the background, never delaying a call). The tone fallback is
//! not cached: the next call tries espeak-ng again. Prompt texts are tenant settings, not
//! personal data, and the audio says nothing but the text, so one cache serves every tenant.
//!
//! Renderings are normally made before any call needs them: tenant-svc asks for them
//! (`PreparePrompts`, [`crate::prepare`]) right after a change to a tenant's texts or voice
//! commits, and [`Prompts::ensure`] renders the tenant's [`texts`] into the store. A call still
//! renders on a miss (the store down at the change, a prompt evicted by a new engine or voice
//! map).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt as _};
use sha2::{Digest as _, Sha256};

use mesh::api::tenant::{CallHandling, RecordingPolicy};
use mesh::call_handling::recording_policy;

use crate::audio;
use crate::runtime::Runtime;

/// The rendering engine (part of the cache key: another engine is another rendering).
pub const ENGINE: &str = "espeak-ng";
/// Longest text rendered; the rest is cut (a prompt is a sentence or two).
pub const MAX_TEXT_CHARS: usize = 1000;
/// Bytes of rendered audio the memory cache keeps (about 17 minutes of 8 kHz mu-law).
pub const CACHE_BYTES: usize = 8 << 20;
/// How long a call waits for a rendering from the object store before rendering it itself.
pub const STORE_TIMEOUT: Duration = Duration::from_secs(1);

/// The mu-law 8 kHz audio of `text` in (approximately) the agent voice `voice` (a Realtime voice
/// name such as `alloy`; unknown names get the default). Cached; never fails: the tone pattern
/// when the text is empty or cannot be spoken.
pub async fn prompt(rt: &Runtime, text: &str, voice: &str) -> Arc<[u8]> {
    rt.prompts.get(text, voice).await
}

/// The texts a call of a tenant with `settings` may speak, as the call composes them: the
/// announcement (followed by the consent question under ON_WITH_CONSENT; none under OFF) and
/// the message prompt (the default when the tenant set none).
pub fn texts(settings: &CallHandling) -> Vec<String> {
    let mut out = Vec::with_capacity(2);
    match recording_policy(settings) {
        RecordingPolicy::On => out.push(announcement(settings, false)),
        RecordingPolicy::OnWithConsent => out.push(announcement(settings, true)),
        _ => {}
    }
    out.push(crate::call::message::MessageSettings::of(settings, "").prompt);
    out
}

/// What a recorded call says before the agent greets: the announcement, and with `consent` the
/// consent question after it.
pub fn announcement(settings: &CallHandling, consent: bool) -> String {
    if consent {
        format!(
            "{} {}",
            settings.recording_announcement, settings.consent_prompt
        )
    } else {
        settings.recording_announcement.clone()
    }
}

/// The espeak-ng voice standing in for a Realtime voice: a female or a male variant of US
/// English, by the Realtime voice's usual character.
pub fn espeak_voice(voice: &str) -> &'static str {
    match voice.trim().to_ascii_lowercase().as_str() {
        "ash" | "ballad" | "echo" | "verse" | "cedar" => "en-us+m3",
        _ => "en-us+f3",
    }
}

/// The cache key (and object name) of a rendering: SHA-256 of engine, espeak voice and text,
/// NUL-separated.
pub fn key(espeak_voice: &str, text: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    for part in [ENGINE, espeak_voice, text] {
        h.update(part.as_bytes());
        h.update([0u8]);
    }
    h.finalize().into()
}

/// Where a rendering is kept in the object store: `prompts/<hex key>`.
pub fn object_path(key: &[u8; 32]) -> String {
    format!("prompts/{}", hex::encode(key))
}

/// The process's prompt cache (cheap to clone; shared).
#[derive(Clone)]
pub struct Prompts {
    cache: Arc<Mutex<Cache>>,
    /// Where renderings are kept beyond this process.
    store: Option<Arc<dyn ObjectStore>>,
    /// Renderings [`Prompts::ensure`] runs at once (espeak-ng processes; calls' own renderings
    /// are not held back by it).
    renders: Arc<tokio::sync::Semaphore>,
}

impl Default for Prompts {
    fn default() -> Self {
        Self {
            cache: Arc::default(),
            store: None,
            renders: Arc::new(tokio::sync::Semaphore::new(PREPARE_RENDERS)),
        }
    }
}

/// Renderings [`Prompts::ensure`] runs at once.
pub const PREPARE_RENDERS: usize = 2;
/// How long [`Prompts::ensure`] waits for the object store (each request).
pub const PREPARE_STORE_TIMEOUT: Duration = Duration::from_secs(10);

/// What [`Prompts::ensure`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ensured {
    /// Rendered now and stored.
    Rendered,
    /// Already in the store.
    AlreadyStored,
    /// espeak-ng could not speak it (a call plays the tone pattern and tries again).
    Unspoken,
    /// Nothing to say (an empty text: a call plays the tone pattern).
    Nothing,
}

/// The object store could not be read or written (worth retrying).
#[derive(Debug, thiserror::Error)]
#[error("prompt store: {0}")]
pub struct StoreFailed(String);

#[derive(Default)]
struct Cache {
    entries: HashMap<[u8; 32], Arc<[u8]>>,
    /// Insertion order, oldest first (eviction order).
    order: VecDeque<[u8; 32]>,
    bytes: usize,
}

impl Cache {
    fn insert(&mut self, key: [u8; 32], audio: Arc<[u8]>) {
        if audio.len() > CACHE_BYTES / 4 || self.entries.contains_key(&key) {
            return;
        }
        self.bytes += audio.len();
        self.entries.insert(key, audio);
        self.order.push_back(key);
        while self.bytes > CACHE_BYTES {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            if let Some(a) = self.entries.remove(&old) {
                self.bytes -= a.len();
            }
        }
    }
}

/// `text` trimmed and cut to [`MAX_TEXT_CHARS`] characters.
fn clean(text: &str) -> &str {
    let text = text.trim();
    match text.char_indices().nth(MAX_TEXT_CHARS) {
        Some((cut, _)) => &text[..cut],
        None => text,
    }
}

impl Prompts {
    /// A cache that also keeps renderings in `store`.
    pub fn with_store(store: Arc<dyn ObjectStore>) -> Self {
        Self {
            store: Some(store),
            ..Self::default()
        }
    }

    /// Makes sure the rendering of `text` in `voice` is in the object store (and this process's
    /// cache): a HEAD when it is there already, else espeak-ng (at most [`PREPARE_RENDERS`] at
    /// once) and a PUT awaited, so a call anywhere finds it the moment this returns. Never plays
    /// the tone into the store. Without a store, renders into the memory cache only.
    pub async fn ensure(&self, text: &str, voice: &str) -> Result<Ensured, StoreFailed> {
        let text = clean(text);
        if text.is_empty() {
            return Ok(Ensured::Nothing);
        }
        let variant = espeak_voice(voice);
        let key = key(variant, text);
        let path = Path::from(object_path(&key));
        if let Some(store) = &self.store {
            let head = tokio::time::timeout(PREPARE_STORE_TIMEOUT, store.head(&path)).await;
            match head.map_err(|_| StoreFailed("head timed out".into()))? {
                Ok(_) => return Ok(Ensured::AlreadyStored),
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(StoreFailed(e.to_string())),
            }
        }
        let audio = match self.cached(&key) {
            Some(hit) => hit,
            None => {
                let _permit = self.renders.acquire().await;
                match audio::espeak_voice(text, Some(variant)).await {
                    Some(speech) if !speech.is_empty() => {
                        metrics::counter!("media_prompts_prepared_total").increment(1);
                        Arc::from(speech)
                    }
                    _ => {
                        tracing::warn!("espeak-ng could not render a prompt ahead of calls");
                        return Ok(Ensured::Unspoken);
                    }
                }
            }
        };
        if let Some(store) = &self.store {
            let payload = object_store::PutPayload::from(bytes::Bytes::copy_from_slice(&audio));
            let put = tokio::time::timeout(PREPARE_STORE_TIMEOUT, store.put(&path, payload)).await;
            put.map_err(|_| StoreFailed("put timed out".into()))?
                .map_err(|e| StoreFailed(e.to_string()))?;
        }
        self.lock().insert(key, audio);
        Ok(Ensured::Rendered)
    }

    /// A rendering kept in the object store (`None`: none, unreadable, or too slow).
    async fn stored(&self, key: &[u8; 32]) -> Option<Arc<[u8]>> {
        let store = self.store.as_ref()?;
        let path = Path::from(object_path(key));
        let read = async { store.get(&path).await?.bytes().await };
        match tokio::time::timeout(STORE_TIMEOUT, read).await {
            Ok(Ok(b)) if !b.is_empty() && b.len() <= CACHE_BYTES / 4 => Some(b.to_vec().into()),
            Ok(Ok(_)) | Ok(Err(object_store::Error::NotFound { .. })) => None,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "stored prompt unreadable; rendering it");
                None
            }
            Err(_) => {
                tracing::warn!("stored prompt too slow; rendering it");
                None
            }
        }
    }

    /// Keeps a rendering in the object store, in the background.
    fn keep(&self, key: &[u8; 32], audio: &Arc<[u8]>) {
        let Some(store) = self.store.clone() else {
            return;
        };
        let path = Path::from(object_path(key));
        let payload = object_store::PutPayload::from(bytes::Bytes::copy_from_slice(audio));
        tokio::spawn(async move {
            let put = tokio::time::timeout(Duration::from_secs(30), store.put(&path, payload));
            match put.await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "rendered prompt not stored"),
                Err(_) => tracing::warn!("rendered prompt not stored in time"),
            }
        });
    }

    /// See [`prompt`].
    pub async fn get(&self, text: &str, voice: &str) -> Arc<[u8]> {
        let text = clean(text);
        if text.is_empty() {
            return audio::tone_pattern().into();
        }
        let variant = espeak_voice(voice);
        let key = key(variant, text);
        if let Some(hit) = self.cached(&key) {
            metrics::counter!("media_prompt_cache_hits_total").increment(1);
            return hit;
        }
        if let Some(kept) = self.stored(&key).await {
            metrics::counter!("media_prompt_store_hits_total").increment(1);
            self.lock().insert(key, kept.clone());
            return kept;
        }
        match audio::espeak_voice(text, Some(variant)).await {
            Some(speech) if !speech.is_empty() => {
                metrics::counter!("media_prompts_rendered_total").increment(1);
                let speech: Arc<[u8]> = speech.into();
                self.lock().insert(key, speech.clone());
                self.keep(&key, &speech);
                speech
            }
            _ => {
                metrics::counter!("media_prompt_tone_fallbacks_total").increment(1);
                tracing::warn!("espeak-ng unavailable; a prompt is played as the tone pattern");
                audio::tone_pattern().into()
            }
        }
    }

    /// The cached rendering under `key`.
    pub fn cached(&self, key: &[u8; 32]) -> Option<Arc<[u8]>> {
        self.lock().entries.get(key).cloned()
    }

    /// Bytes of audio cached.
    pub fn cached_bytes(&self) -> usize {
        self.lock().bytes
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        // A panic while holding the lock leaves the map consistent (inserts are whole).
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn espeak_installed() -> bool {
        std::process::Command::new("espeak-ng")
            .arg("--version")
            .output()
            .is_ok()
    }

    #[test]
    fn the_key_covers_engine_voice_and_text() {
        let a = key("en-us+f3", "This call is recorded.");
        assert_eq!(a, key("en-us+f3", "This call is recorded."));
        assert_ne!(a, key("en-us+m3", "This call is recorded."));
        assert_ne!(a, key("en-us+f3", "This call is recorded"));
        // The separator keeps voice and text apart.
        assert_ne!(key("a", "bc"), key("ab", "c"));
        assert!(object_path(&a).starts_with("prompts/"));
        assert_eq!(object_path(&a).len(), "prompts/".len() + 64);
    }

    #[test]
    fn the_cache_is_bounded_oldest_out_first() {
        let mut c = Cache::default();
        let chunk = CACHE_BYTES / 5;
        for i in 0..8u8 {
            c.insert([i; 32], vec![0xFF; chunk].into());
        }
        assert!(c.bytes <= CACHE_BYTES);
        assert_eq!(c.entries.len(), 5);
        assert!(!c.entries.contains_key(&[0; 32]), "the oldest went first");
        assert!(c.entries.contains_key(&[7; 32]));
        // Too large for the cache: not kept, nothing evicted for it.
        c.insert([9; 32], vec![0xFF; CACHE_BYTES / 2].into());
        assert!(!c.entries.contains_key(&[9; 32]));
        assert_eq!(c.entries.len(), 5);
    }

    #[test]
    fn text_is_trimmed_and_capped() {
        assert_eq!(clean("  hi \n"), "hi");
        let long = "é".repeat(MAX_TEXT_CHARS + 10);
        assert_eq!(clean(&long).chars().count(), MAX_TEXT_CHARS);
    }

    #[tokio::test]
    async fn a_prompt_is_spoken_once_then_served_from_memory() {
        let prompts = Prompts::default();
        let empty = prompts.get("   ", "alloy").await;
        assert_eq!(
            &*empty,
            &audio::tone_pattern()[..],
            "nothing to say: the tone"
        );
        let text = "This call may be recorded.";
        let first = prompts.get(text, "alloy").await;
        if !espeak_installed() {
            assert_ne!(
                std::env::var("CI").as_deref(),
                Ok("true"),
                "espeak-ng is missing"
            );
            assert_eq!(&*first, &audio::tone_pattern()[..]);
            assert_eq!(prompts.cached_bytes(), 0, "the fallback is not cached");
            return;
        }
        assert!(audio::energy(&first) > 100, "audible speech");
        assert_ne!(&*first, &audio::tone_pattern()[..]);
        let again = prompts.get(text, "alloy").await;
        assert!(Arc::ptr_eq(&first, &again), "served from the cache");
        let male = prompts.get(text, "echo").await;
        assert!(
            !Arc::ptr_eq(&first, &male),
            "another voice, another rendering"
        );
        assert_eq!(prompts.cached_bytes(), first.len() + male.len());
    }

    #[test]
    fn the_texts_are_what_a_call_says_under_each_policy() {
        let mut s = mesh::call_handling::defaults();
        s.recording_announcement = "Recorded.".into();
        s.consent_prompt = "Press 1.".into();
        s.message_prompt = String::new();
        let message = crate::call::message::MessageSettings::of(&s, "").prompt;
        assert!(!message.is_empty(), "the default message prompt");
        s.recording_policy = RecordingPolicy::Off as i32;
        assert_eq!(texts(&s), vec![message.clone()]);
        s.recording_policy = RecordingPolicy::On as i32;
        assert_eq!(texts(&s), vec!["Recorded.".to_owned(), message.clone()]);
        s.recording_policy = RecordingPolicy::OnWithConsent as i32;
        assert_eq!(texts(&s), vec!["Recorded. Press 1.".to_owned(), message]);
    }

    #[tokio::test]
    async fn ensure_renders_into_the_store_once() {
        let store: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        let prompts = Prompts::with_store(store.clone());
        assert_eq!(
            prompts.ensure("  ", "alloy").await.unwrap(),
            Ensured::Nothing
        );
        let kept_key = key(espeak_voice("alloy"), "Kept elsewhere.");
        store
            .put(&Path::from(object_path(&kept_key)), vec![1u8, 2, 3].into())
            .await
            .unwrap();
        assert_eq!(
            prompts.ensure("Kept elsewhere.", "alloy").await.unwrap(),
            Ensured::AlreadyStored
        );
        if !espeak_installed() {
            return;
        }
        let text = "Prepared before the call.";
        assert_eq!(
            prompts.ensure(text, "echo").await.unwrap(),
            Ensured::Rendered
        );
        let path = Path::from(object_path(&key(espeak_voice("echo"), text)));
        let stored = store.get(&path).await.expect("stored when ensure returns");
        let stored = stored.bytes().await.unwrap();
        assert!(audio::energy(&stored) > 100);
        assert_eq!(
            prompts.ensure(text, "echo").await.unwrap(),
            Ensured::AlreadyStored
        );
        // A call finds it in memory, without espeak-ng or the store.
        assert_eq!(&*prompts.get(text, "echo").await, &stored[..]);
    }

    #[tokio::test]
    async fn renderings_are_kept_in_the_object_store_and_read_back_from_it() {
        let store: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        // A rendering already in the store is used as it is (another replica rendered it).
        let kept_key = key(espeak_voice("alloy"), "Kept elsewhere.");
        store
            .put(&Path::from(object_path(&kept_key)), vec![1u8, 2, 3].into())
            .await
            .unwrap();
        let prompts = Prompts::with_store(store.clone());
        assert_eq!(&*prompts.get("Kept elsewhere.", "alloy").await, &[1, 2, 3]);
        if !espeak_installed() {
            return;
        }
        // A new rendering goes to the store, where a fresh process finds it.
        let spoken = prompts.get("Stored for later.", "sage").await;
        let path = Path::from(object_path(&key(espeak_voice("sage"), "Stored for later.")));
        let mut stored = None;
        for _ in 0..100 {
            if let Ok(got) = store.get(&path).await {
                stored = Some(got.bytes().await.unwrap());
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(&stored.expect("stored in the background")[..], &spoken[..]);
        let fresh = Prompts::with_store(store);
        assert_eq!(&*fresh.get("Stored for later.", "sage").await, &spoken[..]);
    }
}
