//! The store as Kademlia's [`RecordStore`](store::RecordStore): inbound
//! writes go through the store's checks and are noted for the node to
//! report, and Kademlia's replication and republishing iterate over what it
//! holds.

use super::*;

impl Store {
    /// Stores a record Kademlia received, and notes what became of it.
    fn put_inbound(&mut self, record: Record) -> Result<(), StoreError> {
        let key = record.key.to_vec();
        let result = self.insert(record);
        self.refusal = result.as_ref().err().cloned();
        if let Some(source) = self.source {
            let from = source.peer;
            self.report(match &result {
                Ok(()) => Event::RecordStored { key, from },
                Err(reason) => {
                    tracing::debug!(peer = %from, key = %display_key(&key), %reason, "refused a record");
                    Event::RecordRejected {
                        key,
                        from,
                        reason: reason.clone(),
                    }
                }
            });
        }
        result
    }

    /// Stores a registration Kademlia received, and notes what became of it.
    fn add_provider_inbound(&mut self, record: ProviderRecord) -> Result<(), StoreError> {
        let peer = record.provider;
        let namespace = Namespace::from_record_key(&record.key);
        let result = self.insert_provider(record);
        match (&result, namespace) {
            (Ok(()), Some(namespace)) if self.source.is_some() => {
                self.report(Event::RegistrationStored { namespace, peer });
            }
            (Err(reason), _) => tracing::debug!(%peer, %reason, "refused a registration"),
            _ => {}
        }
        result
    }
}

fn borrow_provider(record: &ProviderRecord) -> Cow<'_, ProviderRecord> {
    Cow::Borrowed(record)
}

type ProvidedIter<'a> = std::iter::Map<
    hash_map::Values<'a, RecordKey, ProviderRecord>,
    fn(&'a ProviderRecord) -> Cow<'a, ProviderRecord>,
>;
/// The records of a [`Store`], for Kademlia's replication and republishing.
#[derive(Debug)]
pub struct RecordsIter<'a>(hash_map::Values<'a, RecordKey, Held>);

impl<'a> Iterator for RecordsIter<'a> {
    type Item = Cow<'a, Record>;

    fn next(&mut self) -> Option<Self::Item> {
        self.0.next().map(|held| Cow::Borrowed(&held.record))
    }
}

impl store::RecordStore for Store {
    type RecordsIter<'a> = RecordsIter<'a>;
    type ProvidedIter<'a> = ProvidedIter<'a>;

    fn get(&self, key: &RecordKey) -> Option<Cow<'_, Record>> {
        self.records
            .get(key)
            .map(|held| Cow::Borrowed(&held.record))
    }

    fn put(&mut self, record: Record) -> store::Result<()> {
        Ok(self.put_inbound(record)?)
    }

    fn remove(&mut self, key: &RecordKey) {
        self.forget_record(key);
    }

    fn records(&self) -> Self::RecordsIter<'_> {
        RecordsIter(self.records.values())
    }

    fn add_provider(&mut self, record: ProviderRecord) -> store::Result<()> {
        Ok(self.add_provider_inbound(record)?)
    }

    fn providers(&self, key: &RecordKey) -> Vec<ProviderRecord> {
        self.providers
            .get(key)
            .map(|list| list.iter().map(|p| p.record.clone()).collect())
            .unwrap_or_default()
    }

    fn provided(&self) -> Self::ProvidedIter<'_> {
        self.provided.values().map(borrow_provider)
    }

    fn remove_provider(&mut self, key: &RecordKey, provider: &PeerId) {
        if let hash_map::Entry::Occupied(mut entry) = self.providers.entry(key.clone()) {
            let quotas = &mut self.quotas;
            entry.get_mut().retain(|p| {
                let keep = &p.record.provider != provider;
                if !keep && let Some(source) = &p.source {
                    quotas.refund(source, Charge::Registration);
                }
                keep
            });
            if entry.get().is_empty() {
                entry.remove();
            }
        }
        if provider == &self.local {
            self.provided.remove(key);
        }
        self.forget_registration(key, provider);
    }
}
