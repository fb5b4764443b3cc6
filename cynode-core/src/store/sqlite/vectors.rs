//! Vector memory without a vector extension.
//!
//! Embeddings are stored as little-endian `f32` blobs next to their dimension and an
//! integer sensitivity rank. A search lets SQL apply every filter (projects,
//! namespaces, sensitivity, model, dimension), streams the surviving `(rowid, id,
//! embedding)` rows, scores each in Rust and keeps the best `k` in a bounded heap;
//! only those `k` rows are then read in full. Memory use is O(k), not O(rows).

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};

use async_trait::async_trait;
use futures::TryStreamExt;
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection};

use super::{RowExt, SqliteStore, db, exists, is_fk_violation, opt_json_text, to_i32, ts};
use crate::model::*;
use crate::store::memory::now;
use crate::store::{VectorStore, validate};
use crate::{Error, ProjectId, Result, VectorItemId};

/// Little-endian bytes of an embedding.
fn encode(e: &[f32]) -> Vec<u8> {
    e.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Decodes a little-endian blob into `out` (reused between rows).
fn decode_into(bytes: &[u8], out: &mut Vec<f32>) -> Result<()> {
    if !bytes.len().is_multiple_of(4) {
        return Err(Error::internal(
            "a stored embedding has a length that is not a multiple of 4",
        ));
    }
    out.clear();
    out.extend(
        bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
    );
    Ok(())
}

fn item_row(r: &SqliteRow) -> Result<VectorItem> {
    let mut embedding = Vec::new();
    decode_into(&r.blob("embedding")?, &mut embedding)?;
    let sensitivity = r
        .opt_text("sensitivity_level")?
        .map(|s| s.parse())
        .transpose()
        .map_err(|e: Error| Error::Internal {
            message: "stored sensitivity could not be read".into(),
            source: Some(Box::new(e)),
        })?;
    Ok(VectorItem {
        id: r.id("id")?,
        project_id: r.id("project_id")?,
        task_id: r.opt_id("task_id")?,
        namespace: r.text("namespace")?,
        sensitivity,
        source_type: r.text("source_type")?,
        source_ref: r.opt_text("source_ref")?,
        chunk_index: to_i32("chunk_index", r.int("chunk_index")?)?,
        content_text: r.text("content_text")?,
        content_sha256: r.text("content_sha256")?,
        embedding_model: r.text("embedding_model")?,
        embedding,
        metadata: r.opt_json("metadata")?,
        created_at: r.time("created_at")?,
    })
}

/// A scored row during the scan, ordered by distance, then rowid.
#[derive(Clone, Copy, Debug)]
struct Candidate {
    distance: f32,
    rowid: i64,
}

impl Ord for Candidate {
    fn cmp(&self, other: &Self) -> Ordering {
        self.distance
            .total_cmp(&other.distance)
            .then_with(|| self.rowid.cmp(&other.rowid))
    }
}
impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl PartialEq for Candidate {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Candidate {}

/// Keeps the `k` nearest rows seen so far, plus every row whose distance equals the
/// k-th one (`ties`): ties are broken by item id, which the scan does not read, so
/// they are settled afterwards. Memory is O(k) unless many rows share the boundary
/// distance exactly (duplicate embeddings).
struct TopK {
    k: usize,
    /// The kept rows; the top is the farthest.
    heap: BinaryHeap<Candidate>,
    /// Rows not in `heap` whose distance equals the farthest kept one.
    ties: Vec<Candidate>,
}

impl TopK {
    fn new(k: usize) -> Self {
        Self {
            k,
            heap: BinaryHeap::with_capacity(k + 1),
            ties: Vec::new(),
        }
    }

    fn offer(&mut self, c: Candidate) {
        if self.heap.len() < self.k {
            self.heap.push(c);
            return;
        }
        let Some(worst) = self.heap.peek().map(|w| w.distance) else {
            return; // k == 0 keeps nothing
        };
        match c.distance.total_cmp(&worst) {
            Ordering::Greater => {}
            Ordering::Equal => self.ties.push(c),
            Ordering::Less => {
                let evicted = self.heap.pop();
                self.heap.push(c);
                let new_worst = self.heap.peek().map_or(c.distance, |w| w.distance);
                if new_worst.total_cmp(&worst) == Ordering::Equal {
                    self.ties.extend(evicted);
                } else {
                    self.ties.clear();
                }
            }
        }
    }

    /// Every row that may be among the `k` nearest once ties are broken by id.
    fn into_candidates(self) -> Vec<Candidate> {
        let mut all = self.heap.into_vec();
        all.extend(self.ties);
        all
    }
}

/// Settles the final order — distance, then item id, as every backend orders hits —
/// and keeps the `k` best.
fn rank(mut scored: Vec<(Candidate, uuid::Uuid)>, k: usize) -> Vec<(Candidate, uuid::Uuid)> {
    scored.sort_by(|(a, ia), (b, ib)| a.distance.total_cmp(&b.distance).then_with(|| ia.cmp(ib)));
    scored.truncate(k);
    scored
}

async fn insert_item(
    conn: &mut SqliteConnection,
    i: &NewVectorItem,
    t: Timestamp,
) -> Result<VectorItem> {
    const ACTION: &str = "store the vector items";
    let item = VectorItem {
        id: VectorItemId::new(),
        project_id: i.project_id,
        task_id: i.task_id,
        namespace: i.namespace.clone(),
        sensitivity: i.sensitivity,
        source_type: i.source_type.clone(),
        source_ref: i.source_ref.clone(),
        chunk_index: i.chunk_index,
        content_sha256: sha256_hex(&i.content_text),
        content_text: i.content_text.clone(),
        embedding_model: i.embedding_model.clone(),
        embedding: i.embedding.clone(),
        metadata: i.metadata.clone(),
        created_at: t,
    };
    let dim = i64::try_from(item.embedding.len()).unwrap_or(i64::MAX);
    let inserted = sqlx::query(
        "INSERT INTO vector_items
             (id, project_id, task_id, namespace, sensitivity_level, sensitivity_rank, source_type,
              source_ref, chunk_index, content_text, content_sha256, embedding_model, embedding_dim,
              embedding, metadata, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?16)",
    )
    .bind(item.id.to_string())
    .bind(item.project_id.to_string())
    .bind(item.task_id.map(|t| t.to_string()))
    .bind(&item.namespace)
    .bind(item.sensitivity.map(|s| s.as_str()))
    .bind(item.sensitivity.map(|s| s.rank()))
    .bind(&item.source_type)
    .bind(&item.source_ref)
    .bind(item.chunk_index)
    .bind(&item.content_text)
    .bind(&item.content_sha256)
    .bind(&item.embedding_model)
    .bind(dim)
    .bind(encode(&item.embedding))
    .bind(opt_json_text(&item.metadata))
    .bind(ts(t))
    .execute(&mut *conn)
    .await;
    match inserted {
        Ok(_) => Ok(item),
        Err(e) if is_fk_violation(&e) => {
            // Say which reference is dangling, as the other backends do.
            if !exists(
                conn,
                "SELECT 1 FROM projects WHERE id = ?1",
                i.project_id.to_string(),
                ACTION,
            )
            .await?
            {
                Err(Error::invalid(format!(
                    "project {} does not exist",
                    i.project_id
                )))
            } else if let Some(t) = i.task_id {
                Err(Error::invalid(format!("task {t} does not exist")))
            } else {
                Err(db(ACTION)(e))
            }
        }
        Err(e) => Err(db(ACTION)(e)),
    }
}

#[async_trait]
impl VectorStore for SqliteStore {
    async fn insert_vectors(&self, items: Vec<NewVectorItem>) -> Result<Vec<VectorItem>> {
        const ACTION: &str = "store the vector items";
        for i in &items {
            validate::vector_item(i)?;
        }
        let mut tx = self.write(ACTION).await?;
        let t = now();
        let mut out = Vec::with_capacity(items.len());
        for i in &items {
            // Any failure returns before the commit, so the transaction (and every row
            // inserted so far) is rolled back.
            out.push(insert_item(&mut tx, i, t).await?);
        }
        tx.commit().await.map_err(db(ACTION))?;
        Ok(out)
    }

    async fn search_vectors(&self, q: &VectorQuery) -> Result<Vec<VectorHit>> {
        const ACTION: &str = "search vector memory";
        validate::vector_query(q)?;
        let projects = serde_json::Value::from(
            q.project_ids
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>(),
        )
        .to_string();
        let namespaces = serde_json::Value::from(q.namespaces.clone()).to_string();
        let dim = i64::try_from(q.embedding.len()).unwrap_or(i64::MAX);
        let k = q.k as usize;

        // One read transaction: the scan and the final reads see the same rows.
        let mut tx = self.read(ACTION).await?;
        let mut top = TopK::new(k);
        {
            let mut rows = sqlx::query(
                "SELECT rowid, embedding FROM vector_items
                 WHERE project_id IN (SELECT value FROM json_each(?1))
                   AND namespace IN (SELECT value FROM json_each(?2))
                   AND (sensitivity_rank IS NULL OR sensitivity_rank <= ?3)
                   AND embedding_model = ?4
                   AND embedding_dim = ?5",
            )
            .bind(&projects)
            .bind(&namespaces)
            .bind(q.max_sensitivity.rank())
            .bind(&q.embedding_model)
            .bind(dim)
            .fetch(&mut *tx);
            let mut buf = Vec::with_capacity(q.embedding.len());
            while let Some(row) = rows.try_next().await.map_err(db(ACTION))? {
                let bytes: &[u8] = row.try_get(1).map_err(db(ACTION))?;
                decode_into(bytes, &mut buf)?;
                let distance = cosine_distance(&buf, &q.embedding);
                top.offer(Candidate {
                    distance,
                    rowid: row.try_get(0).map_err(db(ACTION))?,
                });
            }
        }
        let candidates = top.into_candidates();
        if candidates.is_empty() {
            return Ok(Vec::new());
        }

        // Ids of the candidates, to break ties the way every backend does.
        let by_rowid: HashMap<i64, Candidate> = candidates.iter().map(|c| (c.rowid, *c)).collect();
        let rowids = |cs: &mut dyn Iterator<Item = i64>| {
            serde_json::Value::from(cs.collect::<Vec<_>>()).to_string()
        };
        let id_rows = sqlx::query(
            "SELECT rowid, id FROM vector_items WHERE rowid IN (SELECT value FROM json_each(?1))",
        )
        .bind(rowids(&mut candidates.iter().map(|c| c.rowid)))
        .fetch_all(&mut *tx)
        .await
        .map_err(db(ACTION))?;
        let mut scored = Vec::with_capacity(id_rows.len());
        for r in &id_rows {
            if let Some(c) = by_rowid.get(&r.int("rowid")?) {
                scored.push((*c, r.id::<uuid::Uuid>("id")?));
            }
        }
        let best = rank(scored, k);

        let rows = sqlx::query(
            "SELECT rowid, id, project_id, task_id, namespace, sensitivity_level, source_type, source_ref,
                    chunk_index, content_text, content_sha256, embedding_model, embedding, metadata, created_at
             FROM vector_items WHERE rowid IN (SELECT value FROM json_each(?1))",
        )
        .bind(rowids(&mut best.iter().map(|(c, _)| c.rowid)))
        .fetch_all(&mut *tx)
        .await
        .map_err(db(ACTION))?;
        let mut items = HashMap::with_capacity(rows.len());
        for r in &rows {
            items.insert(r.int("rowid")?, item_row(r)?);
        }
        Ok(best
            .into_iter()
            .filter_map(|(c, _)| {
                items.remove(&c.rowid).map(|item| VectorHit {
                    item,
                    distance: c.distance,
                })
            })
            .collect())
    }

    async fn delete_vectors_by_source(
        &self,
        project_id: ProjectId,
        source_ref: &str,
    ) -> Result<u64> {
        const ACTION: &str = "delete vector items";
        let mut tx = self.write(ACTION).await?;
        let done =
            sqlx::query("DELETE FROM vector_items WHERE project_id = ?1 AND source_ref = ?2")
                .bind(project_id.to_string())
                .bind(source_ref)
                .execute(&mut *tx)
                .await
                .map_err(db(ACTION))?;
        tx.commit().await.map_err(db(ACTION))?;
        Ok(done.rows_affected())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(distance: f32, rowid: i64) -> Candidate {
        Candidate { distance, rowid }
    }

    fn kept(top: TopK) -> Vec<(f32, i64)> {
        let mut v: Vec<(f32, i64)> = top
            .into_candidates()
            .iter()
            .map(|c| (c.distance, c.rowid))
            .collect();
        v.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        v
    }

    #[test]
    fn top_k_keeps_the_nearest() {
        let mut top = TopK::new(3);
        for (i, d) in [0.9f32, 0.1, 0.5, 0.3, 0.7, 0.2].into_iter().enumerate() {
            top.offer(cand(d, i as i64));
        }
        assert_eq!(kept(top), vec![(0.1, 1), (0.2, 5), (0.3, 3)]);
    }

    #[test]
    fn top_k_keeps_every_row_tied_at_the_boundary() {
        let mut top = TopK::new(2);
        for (i, d) in [0.5f32, 0.5, 0.5, 0.9, 0.1, 0.5].into_iter().enumerate() {
            top.offer(cand(d, i as i64));
        }
        // 0.1 is in; the second place is shared by four rows at 0.5.
        assert_eq!(
            kept(top),
            vec![(0.1, 4), (0.5, 0), (0.5, 1), (0.5, 2), (0.5, 5)]
        );
    }

    #[test]
    fn ties_are_dropped_once_the_boundary_moves_closer() {
        let mut top = TopK::new(2);
        for (i, d) in [0.5f32, 0.5, 0.5, 0.2, 0.1].into_iter().enumerate() {
            top.offer(cand(d, i as i64));
        }
        assert_eq!(kept(top), vec![(0.1, 4), (0.2, 3)]);
    }

    #[test]
    fn final_order_breaks_ties_by_id() {
        let id = uuid::Uuid::from_u128;
        let scored = vec![
            (cand(0.5, 1), id(9)),
            (cand(0.5, 2), id(3)),
            (cand(0.1, 3), id(7)),
            (cand(0.5, 4), id(5)),
        ];
        let got: Vec<u128> = rank(scored, 3).iter().map(|(_, i)| i.as_u128()).collect();
        assert_eq!(got, vec![7, 3, 5]);
    }

    #[test]
    fn embeddings_round_trip_through_bytes() {
        let e = vec![1.5f32, -0.25, f32::MIN_POSITIVE, 3.0e7];
        let mut out = Vec::new();
        decode_into(&encode(&e), &mut out).expect("valid length");
        assert_eq!(out, e);
        assert!(decode_into(&[0, 1, 2], &mut out).is_err());
    }
}
