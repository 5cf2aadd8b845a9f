"""The statements of one DuckDB dedup checkpoint, timed one by one (no runner, no connector): 150 checkpoints of 1,000
faker-like rows (20 columns, every key new), each one transaction, the way DuckDBDestination.write lands them.

    python bench/experiments/duckdb_checkpoint_statements.py [checkpoints=150] [current|unique|append]
    env ML=<memory_limit, default 64MB>  CT=<checkpoint_threshold, default DuckDB's>

`current`: the dedup path before 2026-12-03 (a de-duplicated TEMP TABLE per batch, then DELETE … USING and INSERT …
NOT EXISTS, DROP); `unique`: what DuckDBDestination does now when the batch's keys are unique (the registered Arrow
batch merged directly); `append`: a plain INSERT, the floor. Figures in bench/README.md (issue 12).
Standalone, unlike the other experiments (which patch the runner's child through throughput.py --variant).
"""
import time, duckdb, pyarrow as pa, random, sys, collections, os
N_BATCH=int(sys.argv[1]) if len(sys.argv)>1 else 150
MODE=sys.argv[2] if len(sys.argv)>2 else "current"
B=1000
import tempfile
path=os.path.join(tempfile.mkdtemp(prefix="ddb-ckpt-"), "t.duckdb")
for f in (path, path+".wal"):
    if os.path.exists(f): os.remove(f)
cfg={"memory_limit":os.environ.get("ML","64MB")}
if os.environ.get("CT"): cfg["checkpoint_threshold"]=os.environ["CT"]
con=duckdb.connect(path, config=cfg)
cols={"id":"BIGINT","name":"VARCHAR","email":"VARCHAR","age":"BIGINT","updated_at":"TIMESTAMPTZ","address":"JSON"}
for i in range(10): cols[f"c{i}"]="VARCHAR"
cols.update({"_ingest_extracted_at":"TIMESTAMPTZ","_ingest_run_id":"VARCHAR","_ingest_load_id":"VARCHAR","_ingest_rejected":"JSON"})
con.execute("CREATE TABLE t (" + ", ".join(f'"{c}" {t}' for c,t in cols.items()) + ")")
con.execute("CREATE TABLE st (block VARCHAR, k VARCHAR, state JSON, run_id VARCHAR, updated_at TIMESTAMPTZ, PRIMARY KEY (block, k))")
timing=collections.Counter()
import datetime as dt
def batch(start):
    n=B
    ids=list(range(start,start+n))
    now=dt.datetime.now(dt.timezone.utc)
    data={"id":pa.array(ids,pa.int64()),"name":pa.array([f"name{i}" for i in ids]),"email":pa.array([f"e{i}@x.com" for i in ids]),
          "age":pa.array([i%90 for i in ids],pa.int64()),"updated_at":pa.array([now]*n,pa.timestamp("us",tz="UTC")),
          "address":pa.array(['{"city":"x","zip":"1"}']*n)}
    for i in range(10): data[f"c{i}"]=pa.array([f"v{i}-{j}" for j in ids])
    data["_ingest_extracted_at"]=pa.array([now]*n,pa.timestamp("us",tz="UTC")); data["_ingest_run_id"]=pa.array(["r"]*n)
    data["_ingest_load_id"]=pa.array(["l"]*n); data["_ingest_rejected"]=pa.array([None]*n,pa.string())
    return pa.table(data)
def T(name, sql, *a):
    t=time.perf_counter(); con.execute(sql, *a); timing[name]+=time.perf_counter()-t
t0=time.perf_counter()
for b in range(N_BATCH):
    tb=batch(b*B+1)
    t=time.perf_counter(); con.begin(); timing["begin"]+=time.perf_counter()-t
    if MODE=="current":
        tb=tb.append_column("__seq", pa.array(range(tb.num_rows),pa.int64()))
        con.register("__b", tb)
        T("create_dedup", 'CREATE OR REPLACE TEMP TABLE __d AS SELECT * EXCLUDE (__seq) FROM __b WHERE NOT (id IS NULL) QUALIFY row_number() OVER (PARTITION BY id ORDER BY updated_at DESC NULLS LAST, __seq DESC) = 1')
        con.unregister("__b")
        T("delete", 'DELETE FROM t USING __d b WHERE t.id = b.id AND (b.updated_at IS NULL OR t.updated_at IS NULL OR t.updated_at <= b.updated_at)')
        T("insert", 'INSERT INTO t BY NAME SELECT b.* FROM __d b WHERE NOT EXISTS (SELECT 1 FROM t WHERE t.id = b.id)')
        T("drop", "DROP TABLE __d")
    elif MODE=="unique":
        con.register("__d", tb)
        T("delete", 'DELETE FROM t USING __d b WHERE t.id = b.id AND (b.updated_at IS NULL OR t.updated_at IS NULL OR t.updated_at <= b.updated_at)')
        T("insert", 'INSERT INTO t BY NAME SELECT b.* FROM __d b WHERE NOT EXISTS (SELECT 1 FROM t WHERE t.id = b.id)')
        con.unregister("__d")
    elif MODE=="range":  # `unique` plus the batch's key range as a plain predicate (zone maps skip row groups)
        con.register("__d", tb)
        lo, hi = tb.column("id")[0].as_py(), tb.column("id")[-1].as_py()
        T("delete", f'DELETE FROM t USING __d b WHERE t.id = b.id AND t.id BETWEEN {lo} AND {hi} AND (b.updated_at IS NULL OR t.updated_at IS NULL OR t.updated_at <= b.updated_at)')
        T("insert", f'INSERT INTO t BY NAME SELECT b.* FROM __d b WHERE NOT EXISTS (SELECT 1 FROM t WHERE t.id = b.id AND t.id BETWEEN {lo} AND {hi})')
        con.unregister("__d")
    elif MODE=="append":
        con.register("__d", tb)
        T("insert", 'INSERT INTO t BY NAME SELECT * FROM __d')
        con.unregister("__d")
    T("state", "INSERT OR REPLACE INTO st VALUES (?, ?, ?, ?, ?)", ["b","users",'{"x":1}',"r",dt.datetime.now(dt.timezone.utc)])
    t=time.perf_counter(); con.commit(); timing["commit"]+=time.perf_counter()-t
total=time.perf_counter()-t0
print(MODE, N_BATCH, f"total {total:.2f}s", {k: round(v,2) for k,v in timing.most_common()}, "rows", con.execute("select count(*) from t").fetchone())
