//! [`VectorStore`]: chunks with pgvector embeddings and filtered nearest-neighbour search.
//!
//! Embeddings of every dimension share one unconstrained `vector` column. For the
//! dimensions in [`INDEXED_DIMS`] a partial HNSW index on `embedding::vector(N)` exists
//! (migration 0002); a search of such a dimension casts to the same type, so the planner
//! can use that index, with pgvector's iterative scan so that filters do not starve the
//! result (connection defaults, see [`SESSION_EF_SEARCH`]), and the approximate
//! candidates are re-sorted by exact distance. Other
//! dimensions are searched exactly. The planner still chooses: when the filters select
//! few rows, a filtered exact scan is cheaper and is used.

use async_trait::async_trait;
use sqlx::{PgConnection, Postgres, Transaction};
use uuid::Uuid;

use super::PgStore;
use super::error::db_err;
use super::rows::*;
use crate::model::*;
use crate::store::memory::now;
use crate::store::{VectorStore, validate};
use crate::{ProjectId, Result, VectorItemId};

/// Dimensions with an HNSW index (must match the migrations).
pub(crate) const INDEXED_DIMS: [usize; 4] = [384, 768, 1024, 1536];

/// Rows per INSERT statement when storing a batch.
const INSERT_CHUNK: usize = 1000;

/// Filter shared by both search spellings. `$1` query vector, `$2` projects, `$3`
/// namespaces, `$4` max sensitivity rank, `$5` model, `$6` k.
const FILTER: &str = "project_id = ANY($2) AND namespace = ANY($3) \
     AND (sensitivity_rank IS NULL OR sensitivity_rank <= $4) AND embedding_model = $5";

/// The SQL of a search, and whether it runs against an approximate index.
fn search_sql(dim: usize) -> (String, bool) {
    let cols = vector_columns!();
    if INDEXED_DIMS.contains(&dim) {
        // The dimension is a literal so the planner can match the partial index
        // predicate and the indexed expression.
        let sql = format!(
            "WITH candidates AS MATERIALIZED ( \
               SELECT {cols}, (embedding::vector({dim}) <=> $1::vector({dim}))::real AS distance \
               FROM vector_items WHERE embedding_dim = {dim} AND {FILTER} \
               ORDER BY embedding::vector({dim}) <=> $1::vector({dim}) LIMIT $6) \
             SELECT * FROM candidates ORDER BY distance, id"
        );
        (sql, true)
    } else {
        let sql = format!(
            "SELECT {cols}, (embedding <=> $1)::real AS distance FROM vector_items \
             WHERE embedding_dim = $7 AND {FILTER} ORDER BY distance, id LIMIT $6"
        );
        (sql, false)
    }
}

/// `hnsw.ef_search` every connection starts with (set in its startup options, together
/// with `hnsw.iterative_scan = relaxed_order`, so that rows removed by the filters are
/// replaced by further candidates instead of shrinking the result).
pub(crate) const SESSION_EF_SEARCH: u32 = 100;

/// The candidate list a search for `k` hits uses: `2k`, at least the session default,
/// at most pgvector's maximum (1000).
fn ef_search(k: u32) -> u32 {
    k.saturating_mul(2).clamp(SESSION_EF_SEARCH, 1000)
}

/// Raises `hnsw.ef_search` for the rest of the transaction (and restates the iterative
/// scan), for searches whose `k` needs more candidates than the session default.
async fn tune_hnsw(tx: &mut Transaction<'static, Postgres>, k: u32) -> Result<()> {
    sqlx::query(
        "SELECT set_config('hnsw.ef_search', $1, true), \
                set_config('hnsw.iterative_scan', 'relaxed_order', true)",
    )
    .bind(ef_search(k).to_string())
    .execute(&mut **tx)
    .await
    .map_err(db_err)?;
    Ok(())
}

/// Binds the search parameters; the exact spelling also takes the dimension (`$7`).
fn bind_search<'q, O>(
    q: sqlx::query::QueryAs<'q, Postgres, O, sqlx::postgres::PgArguments>,
    query: &VectorQuery,
    approximate: bool,
) -> sqlx::query::QueryAs<'q, Postgres, O, sqlx::postgres::PgArguments> {
    let projects: Vec<Uuid> = query.project_ids.iter().map(|p| p.0).collect();
    let q = q
        .bind(pgvector::Vector::from(query.embedding.clone()))
        .bind(projects)
        .bind(query.namespaces.clone())
        .bind(query.max_sensitivity.rank())
        .bind(query.embedding_model.clone())
        .bind(i64::from(query.k));
    if approximate {
        q
    } else {
        q.bind(i32::try_from(query.embedding.len()).unwrap_or(i32::MAX))
    }
}

async fn insert_chunk(
    conn: &mut PgConnection,
    items: &[NewVectorItem],
    t: Timestamp,
) -> Result<Vec<VectorItem>> {
    let ids: Vec<Uuid> = items.iter().map(|_| VectorItemId::new().0).collect();
    let projects: Vec<Uuid> = items.iter().map(|i| i.project_id.0).collect();
    let tasks: Vec<Option<Uuid>> = items.iter().map(|i| i.task_id.map(|t| t.0)).collect();
    let namespaces: Vec<&str> = items.iter().map(|i| i.namespace.as_str()).collect();
    let levels: Vec<Option<&str>> = items
        .iter()
        .map(|i| i.sensitivity.map(|s| s.as_str()))
        .collect();
    let ranks: Vec<Option<i16>> = items
        .iter()
        .map(|i| i.sensitivity.map(|s| s.rank()))
        .collect();
    let source_types: Vec<&str> = items.iter().map(|i| i.source_type.as_str()).collect();
    let source_refs: Vec<Option<&str>> = items.iter().map(|i| i.source_ref.as_deref()).collect();
    let chunks: Vec<i32> = items.iter().map(|i| i.chunk_index).collect();
    let texts: Vec<&str> = items.iter().map(|i| i.content_text.as_str()).collect();
    let hashes: Vec<String> = items.iter().map(|i| sha256_hex(&i.content_text)).collect();
    let models: Vec<&str> = items.iter().map(|i| i.embedding_model.as_str()).collect();
    let dims: Vec<i32> = items
        .iter()
        .map(|i| i32::try_from(i.embedding.len()).unwrap_or(i32::MAX))
        .collect();
    let embeddings: Vec<pgvector::Vector> = items
        .iter()
        .map(|i| pgvector::Vector::from(i.embedding.clone()))
        .collect();
    let metadata: Vec<Option<&serde_json::Value>> =
        items.iter().map(|i| i.metadata.as_ref()).collect();
    let rows: Vec<VectorRow> = sqlx::query_as(concat!(
        "INSERT INTO vector_items (id, project_id, task_id, namespace, sensitivity_level, \
         sensitivity_rank, source_type, source_ref, chunk_index, content_text, content_sha256, \
         embedding_model, embedding_dim, embedding, metadata, created_at, updated_at) \
         SELECT i.id, i.project_id, i.task_id, i.namespace, i.level, i.rank, i.source_type, \
                i.source_ref, i.chunk_index, i.content_text, i.sha, i.model, i.dim, i.embedding, \
                i.metadata, $16, $16 \
         FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::text[], $6::int2[], \
                     $7::text[], $8::text[], $9::int4[], $10::text[], $11::text[], $12::text[], \
                     $13::int4[], $14::vector[], $15::jsonb[]) \
              AS i(id, project_id, task_id, namespace, level, rank, source_type, source_ref, \
                   chunk_index, content_text, sha, model, dim, embedding, metadata) \
         RETURNING ",
        vector_columns!()
    ))
    .bind(&ids)
    .bind(&projects)
    .bind(&tasks)
    .bind(&namespaces)
    .bind(&levels)
    .bind(&ranks)
    .bind(&source_types)
    .bind(&source_refs)
    .bind(&chunks)
    .bind(&texts)
    .bind(&hashes)
    .bind(&models)
    .bind(&dims)
    .bind(&embeddings)
    .bind(&metadata)
    .bind(t)
    .fetch_all(&mut *conn)
    .await
    .map_err(db_err)?;
    // RETURNING order is not guaranteed: put the rows back in input order.
    let mut out: Vec<VectorItem> = rows
        .into_iter()
        .map(VectorItem::try_from)
        .collect::<Result<_>>()?;
    let pos: std::collections::HashMap<Uuid, usize> =
        ids.iter().enumerate().map(|(n, id)| (*id, n)).collect();
    out.sort_by_key(|v| pos.get(&v.id.0).copied().unwrap_or(usize::MAX));
    Ok(out)
}

impl PgStore {
    /// The plan PostgreSQL chooses for [`VectorStore::search_vectors`] with this query,
    /// as `EXPLAIN` text (one line per plan node), under the same settings the search
    /// uses. For operators checking that an approximate index serves their searches.
    pub async fn explain_vector_search(&self, query: &VectorQuery) -> Result<String> {
        validate::vector_query(query)?;
        let (sql, approximate) = search_sql(query.embedding.len());
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        if approximate && ef_search(query.k) > SESSION_EF_SEARCH {
            tune_hnsw(&mut tx, query.k).await?;
        }
        let q = sqlx::query_as::<_, (String,)>(sqlx::AssertSqlSafe(format!("EXPLAIN {sql}")));
        let lines: Vec<(String,)> = bind_search(q, query, approximate)
            .fetch_all(&mut *tx)
            .await
            .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(lines
            .into_iter()
            .map(|(l,)| l)
            .collect::<Vec<_>>()
            .join("\n"))
    }
}

#[async_trait]
impl VectorStore for PgStore {
    async fn insert_vectors(&self, items: Vec<NewVectorItem>) -> Result<Vec<VectorItem>> {
        for i in &items {
            validate::vector_item(i)?;
        }
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let t = now();
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        let mut out = Vec::with_capacity(items.len());
        for chunk in items.chunks(INSERT_CHUNK) {
            out.extend(insert_chunk(&mut tx, chunk, t).await?);
        }
        tx.commit().await.map_err(db_err)?;
        Ok(out)
    }

    async fn search_vectors(&self, query: &VectorQuery) -> Result<Vec<VectorHit>> {
        validate::vector_query(query)?;
        let (sql, approximate) = search_sql(query.embedding.len());
        let q = sqlx::query_as::<_, HitRow>(sqlx::AssertSqlSafe(sql));
        let rows = if approximate && ef_search(query.k) > SESSION_EF_SEARCH {
            let mut tx = self.pool.begin().await.map_err(db_err)?;
            tune_hnsw(&mut tx, query.k).await?;
            let rows = bind_search(q, query, approximate)
                .fetch_all(&mut *tx)
                .await
                .map_err(db_err)?;
            tx.commit().await.map_err(db_err)?;
            rows
        } else {
            // The session defaults suffice: one round trip.
            bind_search(q, query, approximate)
                .fetch_all(&self.pool)
                .await
                .map_err(db_err)?
        };
        rows.into_iter().map(VectorHit::try_from).collect()
    }

    async fn delete_vectors_by_source(
        &self,
        project_id: ProjectId,
        source_ref: &str,
    ) -> Result<u64> {
        let done =
            sqlx::query("DELETE FROM vector_items WHERE project_id = $1 AND source_ref = $2")
                .bind(project_id.0)
                .bind(source_ref)
                .execute(&self.pool)
                .await
                .map_err(db_err)?;
        Ok(done.rows_affected())
    }
}
