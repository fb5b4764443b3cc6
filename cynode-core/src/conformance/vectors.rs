//! Cases for [`VectorStore`](crate::store::VectorStore): chunk storage and filtered
//! nearest-neighbour search.

use std::collections::{HashMap, HashSet};

use serde_json::json;

use super::support::*;
use crate::model::*;
use crate::store::Store;
use crate::{ProjectId, TaskId, VectorItemId};

/// Absolute tolerance for distances computed by a backend (f32 arithmetic, or an
/// index's own) against the f64 yardstick.
const EPS: f64 = 1e-4;

fn item(project: ProjectId, namespace: &str, model: &str, embedding: Vec<f32>) -> NewVectorItem {
    NewVectorItem {
        project_id: project,
        task_id: None,
        namespace: namespace.into(),
        sensitivity: None,
        source_type: "note".into(),
        source_ref: None,
        chunk_index: 0,
        content_text: "chunk".into(),
        embedding_model: model.into(),
        embedding,
        metadata: None,
    }
}

fn query(
    projects: &[ProjectId],
    namespaces: &[&str],
    max: Sensitivity,
    model: &str,
    e: Vec<f32>,
    k: u32,
) -> VectorQuery {
    VectorQuery {
        project_ids: projects.to_vec(),
        namespaces: namespaces.iter().map(|n| n.to_string()).collect(),
        max_sensitivity: max,
        embedding_model: model.into(),
        embedding: e,
        k,
    }
}

fn hit_ids(hits: &[VectorHit]) -> Vec<VectorItemId> {
    hits.iter().map(|h| h.item.id).collect()
}

/// Every field of a chunk survives the round trip (embedding bit for bit, metadata,
/// time); the store fills in the id, the SHA-256 of the text and the time.
pub async fn vectors_round_trip(s: &dyn Store) {
    let u = user(s, "u").await;
    let p = project(s, "p").await;
    let t = task(s, Some(u.id), "t").await;
    let embedding = vec![
        0.1f32,
        -0.25,
        3.5e-7,
        1.0e10,
        -1.0,
        f32::MIN_POSITIVE,
        0.0,
        7.0,
    ];
    let text = "Sanitized text with \"quotes\", newlines\nand ünïcode 🚀";
    let meta = json!({"title": "Doc", "page": 3, "tags": ["a", "b"]});
    let inserted = ok(
        s.insert_vectors(vec![
            NewVectorItem {
                project_id: p.id,
                task_id: Some(t.id),
                namespace: "docs".into(),
                sensitivity: Some(Sensitivity::Confidential),
                source_type: "task_artifact".into(),
                source_ref: Some("out/report.md".into()),
                chunk_index: 42,
                content_text: text.into(),
                embedding_model: "all-MiniLM-L6-v2".into(),
                embedding: embedding.clone(),
                metadata: Some(meta.clone()),
            },
            item(
                p.id,
                "docs",
                "all-MiniLM-L6-v2",
                vec![1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
            ),
        ])
        .await,
        "insert_vectors",
    );
    assert_eq!(
        inserted.len(),
        2,
        "one stored item per input, in input order"
    );
    let v = &inserted[0];
    assert_eq!(
        (v.project_id, v.task_id, v.namespace.as_str()),
        (p.id, Some(t.id), "docs")
    );
    assert_eq!(
        (
            v.sensitivity,
            v.source_type.as_str(),
            v.source_ref.as_deref()
        ),
        (
            Some(Sensitivity::Confidential),
            "task_artifact",
            Some("out/report.md")
        )
    );
    assert_eq!(
        (
            v.chunk_index,
            v.content_text.as_str(),
            v.embedding_model.as_str()
        ),
        (42, text, "all-MiniLM-L6-v2")
    );
    assert_eq!(
        v.embedding, embedding,
        "embedding must round-trip bit for bit"
    );
    assert_eq!(v.metadata.as_ref(), Some(&meta));
    assert_eq!(
        v.content_sha256,
        sha256_hex(text),
        "content_sha256 is the hex SHA-256 of the text"
    );
    let w = &inserted[1];
    assert_eq!(
        (w.task_id, w.sensitivity, &w.source_ref, &w.metadata),
        (None, None, &None, &None)
    );
    assert_ne!(v.id, w.id);

    let hits = ok(
        s.search_vectors(&query(
            &[p.id],
            &["docs"],
            Sensitivity::Restricted,
            "all-MiniLM-L6-v2",
            embedding.clone(),
            10,
        ))
        .await,
        "search_vectors",
    );
    assert_eq!(hits.len(), 2);
    assert_eq!(
        hits[0].item, *v,
        "a search returns the stored item unchanged"
    );
    assert!(
        f64::from(hits[0].distance).abs() < EPS,
        "distance to itself must be 0, got {}",
        hits[0].distance
    );
    assert_eq!(hits[1].item, *w);
    let expected = cosine_f64(&embedding, &w.embedding);
    assert!(
        (f64::from(hits[1].distance) - expected).abs() < EPS,
        "cosine distance {} differs from {expected}",
        hits[1].distance
    );
    // Opposite direction: distance 2.
    let opposite: Vec<f32> = w.embedding.iter().map(|x| -x).collect();
    let far = ok(
        s.search_vectors(&query(
            &[p.id],
            &["docs"],
            Sensitivity::Restricted,
            "all-MiniLM-L6-v2",
            opposite,
            10,
        ))
        .await,
        "search_vectors(opposite)",
    );
    assert_eq!(far.last().map(|h| h.item.id), Some(w.id));
    assert!(
        far.last()
            .is_some_and(|h| (f64::from(h.distance) - 2.0).abs() < EPS),
        "opposite vectors are at distance 2"
    );
}

/// Bad chunks (dimension 0 or above 2000, NaN, infinity, zero vector, blank namespace,
/// source type or model, empty text, unknown project or task) and bad queries (k = 0
/// or above 1000, no project, no namespace, bad query vector) are `invalid_input`.
pub async fn vectors_invalid_input(s: &dyn Store) {
    let p = project(s, "p").await;
    let good = || item(p.id, "docs", "m", vec![1.0, 2.0]);
    let bad: Vec<(&str, NewVectorItem)> = vec![
        (
            "empty embedding",
            NewVectorItem {
                embedding: vec![],
                ..good()
            },
        ),
        (
            "2001 dimensions",
            NewVectorItem {
                embedding: vec![1.0; 2001],
                ..good()
            },
        ),
        (
            "NaN",
            NewVectorItem {
                embedding: vec![1.0, f32::NAN],
                ..good()
            },
        ),
        (
            "infinity",
            NewVectorItem {
                embedding: vec![f32::INFINITY, 1.0],
                ..good()
            },
        ),
        (
            "negative infinity",
            NewVectorItem {
                embedding: vec![1.0, f32::NEG_INFINITY],
                ..good()
            },
        ),
        (
            "zero vector",
            NewVectorItem {
                embedding: vec![0.0, -0.0],
                ..good()
            },
        ),
        (
            "blank namespace",
            NewVectorItem {
                namespace: " ".into(),
                ..good()
            },
        ),
        (
            "blank source type",
            NewVectorItem {
                source_type: "".into(),
                ..good()
            },
        ),
        (
            "blank model",
            NewVectorItem {
                embedding_model: "".into(),
                ..good()
            },
        ),
        (
            "empty text",
            NewVectorItem {
                content_text: "".into(),
                ..good()
            },
        ),
        (
            "unknown project",
            NewVectorItem {
                project_id: ProjectId::new(),
                ..good()
            },
        ),
        (
            "unknown task",
            NewVectorItem {
                task_id: Some(TaskId::new()),
                ..good()
            },
        ),
    ];
    for (what, i) in bad {
        fails(
            s.insert_vectors(vec![i]).await,
            INVALID,
            &format!("insert_vectors with {what}"),
        );
    }
    ok(
        s.insert_vectors(vec![NewVectorItem {
            embedding: vec![0.5; 2000],
            ..good()
        }])
        .await,
        "2000 dimensions are allowed",
    );
    ok(s.insert_vectors(vec![good()]).await, "insert_vectors(good)");
    assert_eq!(
        ok(
            s.insert_vectors(vec![]).await,
            "insert_vectors(empty batch)"
        ),
        vec![]
    );

    let q = || {
        query(
            &[p.id],
            &["docs"],
            Sensitivity::Restricted,
            "m",
            vec![1.0, 2.0],
            5,
        )
    };
    let bad_queries: Vec<(&str, VectorQuery)> = vec![
        ("k = 0", VectorQuery { k: 0, ..q() }),
        ("k = 1001", VectorQuery { k: 1001, ..q() }),
        (
            "no project",
            VectorQuery {
                project_ids: vec![],
                ..q()
            },
        ),
        (
            "no namespace",
            VectorQuery {
                namespaces: vec![],
                ..q()
            },
        ),
        (
            "empty query vector",
            VectorQuery {
                embedding: vec![],
                ..q()
            },
        ),
        (
            "NaN query",
            VectorQuery {
                embedding: vec![f32::NAN, 1.0],
                ..q()
            },
        ),
        (
            "zero query",
            VectorQuery {
                embedding: vec![0.0, 0.0],
                ..q()
            },
        ),
    ];
    for (what, query) in bad_queries {
        fails(
            s.search_vectors(&query).await,
            INVALID,
            &format!("search_vectors with {what}"),
        );
    }
    assert_eq!(
        ok(
            s.search_vectors(&VectorQuery { k: 1000, ..q() }).await,
            "search_vectors(k = 1000)"
        )
        .len(),
        1
    );
}

/// ATOMICITY: a batch with one invalid chunk (a NaN, or an unknown project, placed
/// last) stores none of its chunks.
pub async fn vectors_insert_is_atomic(s: &dyn Store) {
    let p = project(s, "p").await;
    let batch = |last: NewVectorItem| {
        vec![
            item(p.id, "docs", "m", vec![1.0, 0.0, 0.0]),
            item(p.id, "docs", "m", vec![0.0, 1.0, 0.0]),
            last,
        ]
    };
    fails(
        s.insert_vectors(batch(item(p.id, "docs", "m", vec![0.0, 0.0, f32::NAN])))
            .await,
        INVALID,
        "insert_vectors with a NaN in the last chunk",
    );
    fails(
        s.insert_vectors(batch(item(
            ProjectId::new(),
            "docs",
            "m",
            vec![0.0, 0.0, 1.0],
        )))
        .await,
        INVALID,
        "insert_vectors with an unknown project in the last chunk",
    );
    let q = query(
        &[p.id],
        &["docs"],
        Sensitivity::Restricted,
        "m",
        vec![1.0, 1.0, 1.0],
        100,
    );
    let hits = ok(s.search_vectors(&q).await, "search_vectors");
    assert!(
        hits.is_empty(),
        "a rejected batch left {} chunk(s) behind",
        hits.len()
    );
    assert_eq!(
        ok(
            s.insert_vectors(batch(item(p.id, "docs", "m", vec![0.0, 0.0, 1.0])))
                .await,
            "insert_vectors"
        )
        .len(),
        3
    );
    assert_eq!(ok(s.search_vectors(&q).await, "search_vectors").len(), 3);
}

/// Searches see only the projects and namespaces they name, only chunks at or below
/// the caller's sensitivity (chunks without one always), only chunks of the query's
/// model and dimension, and at most `k` of them.
pub async fn vectors_filters(s: &dyn Store) {
    let pa = project(s, "pa").await;
    let pb = project(s, "pb").await;
    let e = [1.0f32, 0.5, 0.25, -0.5];
    // The query points elsewhere, so the chunks' small differences change their distance.
    let qe = vec![0.2f32, 1.0, -0.3, 0.4];
    let mut items = Vec::new();
    let mut expect: HashMap<&str, VectorItemId> = HashMap::new();
    // (label, project, namespace, sensitivity, model, dimension)
    type Chunk<'a> = (
        &'a str,
        ProjectId,
        &'a str,
        Option<Sensitivity>,
        &'a str,
        usize,
    );
    let spec: [Chunk<'_>; 10] = [
        ("a-docs-none", pa.id, "docs", None, "m", 4),
        (
            "a-docs-public",
            pa.id,
            "docs",
            Some(Sensitivity::Public),
            "m",
            4,
        ),
        (
            "a-docs-internal",
            pa.id,
            "docs",
            Some(Sensitivity::Internal),
            "m",
            4,
        ),
        (
            "a-docs-confidential",
            pa.id,
            "docs",
            Some(Sensitivity::Confidential),
            "m",
            4,
        ),
        (
            "a-docs-restricted",
            pa.id,
            "docs",
            Some(Sensitivity::Restricted),
            "m",
            4,
        ),
        ("a-skills", pa.id, "skills", None, "m", 4),
        ("b-docs", pb.id, "docs", None, "m", 4),
        ("a-docs-other-model", pa.id, "docs", None, "m2", 4),
        ("a-docs-3dim", pa.id, "docs", None, "m", 3),
        ("a-Docs-case", pa.id, "Docs", None, "m", 4),
    ];
    for (i, (label, project, ns, sens, model, dim)) in spec.iter().enumerate() {
        let mut v = e[..*dim].to_vec();
        v[0] += i as f32 * 0.05; // distinct distances
        items.push(NewVectorItem {
            sensitivity: *sens,
            content_text: label.to_string(),
            ..item(*project, ns, model, v)
        });
    }
    let stored = ok(s.insert_vectors(items).await, "insert_vectors");
    for (i, v) in stored.iter().enumerate() {
        expect.insert(spec[i].0, v.id);
    }
    let labels = |hits: &[VectorHit]| {
        let mut v: Vec<String> = hits.iter().map(|h| h.item.content_text.clone()).collect();
        v.sort();
        v
    };
    let run = |projects: Vec<ProjectId>,
               namespaces: Vec<&'static str>,
               max: Sensitivity,
               model: &'static str,
               k: u32| { query(&projects, &namespaces, max, model, qe.clone(), k) };
    let cases: Vec<(&str, VectorQuery, Vec<&str>)> = vec![
        (
            "project a, docs, restricted",
            run(vec![pa.id], vec!["docs"], Sensitivity::Restricted, "m", 100),
            vec![
                "a-docs-confidential",
                "a-docs-internal",
                "a-docs-none",
                "a-docs-public",
                "a-docs-restricted",
            ],
        ),
        (
            "project a, docs, public",
            run(vec![pa.id], vec!["docs"], Sensitivity::Public, "m", 100),
            vec!["a-docs-none", "a-docs-public"],
        ),
        (
            "project a, docs, internal",
            run(vec![pa.id], vec!["docs"], Sensitivity::Internal, "m", 100),
            vec!["a-docs-internal", "a-docs-none", "a-docs-public"],
        ),
        (
            "project a, docs, confidential",
            run(
                vec![pa.id],
                vec!["docs"],
                Sensitivity::Confidential,
                "m",
                100,
            ),
            vec![
                "a-docs-confidential",
                "a-docs-internal",
                "a-docs-none",
                "a-docs-public",
            ],
        ),
        (
            "project a, skills",
            run(vec![pa.id], vec!["skills"], Sensitivity::Public, "m", 100),
            vec!["a-skills"],
        ),
        (
            "projects a+b, docs+skills, public",
            run(
                vec![pa.id, pb.id],
                vec!["docs", "skills"],
                Sensitivity::Public,
                "m",
                100,
            ),
            vec!["a-docs-none", "a-docs-public", "a-skills", "b-docs"],
        ),
        (
            "project b",
            run(vec![pb.id], vec!["docs"], Sensitivity::Restricted, "m", 100),
            vec!["b-docs"],
        ),
        (
            "other model",
            run(
                vec![pa.id],
                vec!["docs"],
                Sensitivity::Restricted,
                "m2",
                100,
            ),
            vec!["a-docs-other-model"],
        ),
        (
            "unknown model",
            run(
                vec![pa.id],
                vec!["docs"],
                Sensitivity::Restricted,
                "nope",
                100,
            ),
            vec![],
        ),
        (
            "unknown project",
            run(
                vec![ProjectId::new()],
                vec!["docs"],
                Sensitivity::Restricted,
                "m",
                100,
            ),
            vec![],
        ),
        (
            "unknown namespace",
            run(vec![pa.id], vec!["nope"], Sensitivity::Restricted, "m", 100),
            vec![],
        ),
        (
            "namespace case",
            run(vec![pa.id], vec!["Docs"], Sensitivity::Restricted, "m", 100),
            vec!["a-Docs-case"],
        ),
    ];
    for (what, q, expected) in cases {
        let hits = ok(
            s.search_vectors(&q).await,
            &format!("search_vectors({what})"),
        );
        assert_eq!(
            labels(&hits),
            expected,
            "search_vectors({what}): wrong chunks"
        );
        for h in &hits {
            assert_eq!(Some(&h.item.id), expect.get(h.item.content_text.as_str()));
        }
    }
    // The query's dimension selects the chunks: a 3-dim query sees only the 3-dim chunk.
    let q3 = query(
        &[pa.id],
        &["docs"],
        Sensitivity::Restricted,
        "m",
        qe[..3].to_vec(),
        100,
    );
    assert_eq!(
        labels(&ok(s.search_vectors(&q3).await, "search_vectors(3 dims)")),
        ["a-docs-3dim"]
    );
    // k bounds the answer and keeps the nearest.
    let all = ok(
        s.search_vectors(&run(
            vec![pa.id],
            vec!["docs"],
            Sensitivity::Restricted,
            "m",
            100,
        ))
        .await,
        "search_vectors",
    );
    for k in [1u32, 2, 3] {
        let hits = ok(
            s.search_vectors(&run(
                vec![pa.id],
                vec!["docs"],
                Sensitivity::Restricted,
                "m",
                k,
            ))
            .await,
            "search_vectors(k)",
        );
        assert_eq!(
            hit_ids(&hits),
            hit_ids(&all[..k as usize]),
            "k = {k} must return the {k} nearest, nearest first"
        );
    }
}

/// Checks an answer against the brute-force top-k over `candidates`.
fn check_nearest(what: &str, hits: &[VectorHit], candidates: &[&VectorItem], q: &[f32], k: usize) {
    let mut truth: Vec<(f64, VectorItemId)> = candidates
        .iter()
        .map(|c| (cosine_f64(&c.embedding, q), c.id))
        .collect();
    truth.sort_by(|a, b| a.0.total_cmp(&b.0));
    let want = k.min(truth.len());
    assert_eq!(
        hits.len(),
        want,
        "{what}: expected {want} hits (k = {k}, {} candidates)",
        truth.len()
    );
    if want == 0 {
        return;
    }
    let dist: HashMap<VectorItemId, f64> = truth.iter().map(|(d, id)| (*id, *d)).collect();
    let kth = truth[want - 1].0;
    let mut seen = HashSet::new();
    let mut prev = f64::NEG_INFINITY;
    for (i, h) in hits.iter().enumerate() {
        assert!(
            seen.insert(h.item.id),
            "{what}: item {} returned twice",
            h.item.id
        );
        let Some(&d) = dist.get(&h.item.id) else {
            panic!(
                "{what}: hit {i} ({}) is not among the chunks the filters allow",
                h.item.id
            )
        };
        assert!(
            (f64::from(h.distance) - d).abs() < EPS,
            "{what}: hit {i} reports distance {}, brute force says {d}",
            h.distance
        );
        assert!(
            d <= kth + EPS,
            "{what}: hit {i} at {d} is farther than the true k-th nearest at {kth}"
        );
        assert!(
            d + EPS >= prev,
            "{what}: hits are not nearest first ({prev} then {d})"
        );
        prev = d;
    }
    for (d, id) in &truth[..want] {
        if *d < kth - EPS {
            assert!(
                seen.contains(id),
                "{what}: the chunk {id} at distance {d} is missing (k-th nearest at {kth})"
            );
        }
    }
}

async fn nearest_against_brute_force(s: &dyn Store, dim: usize, n: usize, seed: u64) {
    let projects = [
        project(s, "p0").await.id,
        project(s, "p1").await.id,
        project(s, "p2").await.id,
    ];
    let namespaces = ["docs", "skills", "project_memory"];
    let sens = [
        None,
        Some(Sensitivity::Public),
        Some(Sensitivity::Internal),
        Some(Sensitivity::Confidential),
        Some(Sensitivity::Restricted),
    ];
    let mut rng = Rng::new(seed);
    let mut stored: Vec<VectorItem> = Vec::new();
    let mut batch = Vec::new();
    for i in 0..n {
        let model = if i % 10 == 9 { "other-model" } else { "model" };
        batch.push(NewVectorItem {
            sensitivity: sens[rng.below(sens.len())],
            chunk_index: i as i32,
            content_text: format!("chunk {i}"),
            ..item(
                projects[rng.below(3)],
                namespaces[rng.below(3)],
                model,
                rng.vector(dim),
            )
        });
        if batch.len() == 100 || i == n - 1 {
            stored.extend(ok(
                s.insert_vectors(std::mem::take(&mut batch)).await,
                "insert_vectors",
            ));
        }
    }
    assert_eq!(stored.len(), n);
    let queries: [(Vec<ProjectId>, Vec<&str>, Sensitivity, u32); 6] = [
        (
            projects.to_vec(),
            namespaces.to_vec(),
            Sensitivity::Restricted,
            10,
        ),
        (vec![projects[0]], vec!["docs"], Sensitivity::Restricted, 5),
        (
            vec![projects[1], projects[2]],
            vec!["docs", "skills"],
            Sensitivity::Internal,
            17,
        ),
        (
            vec![projects[0]],
            namespaces.to_vec(),
            Sensitivity::Public,
            1,
        ),
        (
            vec![projects[2]],
            vec!["project_memory"],
            Sensitivity::Confidential,
            1000,
        ),
        (
            projects.to_vec(),
            vec!["skills"],
            Sensitivity::Restricted,
            50,
        ),
    ];
    for (qi, (ps, ns, max, k)) in queries.into_iter().enumerate() {
        let e = rng.vector(dim);
        let candidates: Vec<&VectorItem> = stored
            .iter()
            .filter(|v| {
                ps.contains(&v.project_id)
                    && ns.contains(&v.namespace.as_str())
                    && v.embedding_model == "model"
            })
            .filter(|v| v.sensitivity.is_none_or(|s| s.rank() <= max.rank()))
            .collect();
        let q = query(&ps, &ns, max, "model", e.clone(), k);
        let hits = ok(
            s.search_vectors(&q).await,
            &format!("search_vectors(query {qi})"),
        );
        check_nearest(
            &format!("dim {dim}, query {qi}"),
            &hits,
            &candidates,
            &e,
            k as usize,
        );
    }
}

/// Nearest-first order and membership agree with a brute-force computation on seeded
/// random data (24 dimensions, 400 chunks, mixed projects, namespaces, sensitivities
/// and models), with reported distances matching cosine distance.
pub async fn vectors_nearest_brute_force(s: &dyn Store) {
    nearest_against_brute_force(s, 24, 400, 0x5EED_0001).await;
}

/// The same check at 384 dimensions (a size a backend may index approximately): a
/// filtered search must still return the true k nearest on a small data set.
pub async fn vectors_nearest_384_dims(s: &dyn Store) {
    nearest_against_brute_force(s, 384, 150, 0x5EED_0384).await;
}

/// Deleting by source removes exactly the chunks of that source in that project and
/// returns how many; they no longer turn up in searches.
pub async fn vectors_delete_by_source(s: &dyn Store) {
    let pa = project(s, "pa").await;
    let pb = project(s, "pb").await;
    let with_source = |p: ProjectId, src: Option<&str>, x: f32| NewVectorItem {
        source_ref: src.map(str::to_string),
        ..item(p, "docs", "m", vec![x, 1.0])
    };
    ok(
        s.insert_vectors(vec![
            with_source(pa.id, Some("doc.md"), 0.1),
            with_source(pa.id, Some("doc.md"), 0.2),
            with_source(pa.id, Some("doc.md"), 0.3),
            with_source(pa.id, Some("other.md"), 0.4),
            with_source(pa.id, None, 0.5),
            with_source(pb.id, Some("doc.md"), 0.6),
        ])
        .await,
        "insert_vectors",
    );
    assert_eq!(
        ok(
            s.delete_vectors_by_source(pa.id, "doc.md").await,
            "delete_vectors_by_source"
        ),
        3
    );
    assert_eq!(
        ok(
            s.delete_vectors_by_source(pa.id, "doc.md").await,
            "delete_vectors_by_source again"
        ),
        0
    );
    assert_eq!(
        ok(
            s.delete_vectors_by_source(pa.id, "DOC.md").await,
            "delete_vectors_by_source(other case)"
        ),
        0
    );
    assert_eq!(
        ok(
            s.delete_vectors_by_source(ProjectId::new(), "doc.md").await,
            "delete_vectors_by_source(unknown project)"
        ),
        0
    );
    let left = ok(
        s.search_vectors(&query(
            &[pa.id, pb.id],
            &["docs"],
            Sensitivity::Restricted,
            "m",
            vec![0.0, 1.0],
            100,
        ))
        .await,
        "search_vectors",
    );
    let mut refs: Vec<(ProjectId, Option<String>)> = left
        .iter()
        .map(|h| (h.item.project_id, h.item.source_ref.clone()))
        .collect();
    refs.sort_by_key(|(p, r)| (*p == pb.id, r.clone()));
    assert_eq!(
        refs,
        vec![
            (pa.id, None),
            (pa.id, Some("other.md".into())),
            (pb.id, Some("doc.md".into()))
        ],
        "exactly the other sources, source-less chunks and the other project's chunks remain"
    );
}
