"""Downstream example: runs when `demo_users` lands (one table → one trigger, payload → Parameters).

In production (Argo): deploy it and Argo Events starts it for every `data_landed.demo.users` event:
    python flows/users_report_flow.py argo-workflows create
Locally (no event bus): start it from the latest event in the ledger, with the same payload → Parameters mapping:
    ingest events trigger flows/users_report_flow.py
"""
from metaflow import FlowSpec, Parameter, step

from ingest import after_landed


# Each Parameter takes the payload field of the same name. The deploy refuses a block or stream connectors.yaml lacks.
@after_landed("demo.users", parameters=["table", "rows", "load_id", "destination"])
class UsersReportFlow(FlowSpec):
    table = Parameter("table", default="demo_users", help="The table that landed.")
    rows = Parameter("rows", default=0, type=int, help="Rows in the load that triggered us.")
    load_id = Parameter("load_id", default="", help="The load to report on.")
    destination = Parameter("destination", default="", help="Where it landed, e.g. duckdb:/path/warehouse.duckdb.")

    @step
    def start(self):
        self.report = {"table": self.table, "announced_rows": self.rows, "load_id": self.load_id}
        if self.destination.startswith("duckdb:"):
            import duckdb

            con = duckdb.connect(self.destination.removeprefix("duckdb:"), read_only=True)
            try:
                self.report["rows_in_load"] = con.execute(
                    f'SELECT count(*) FROM "{self.table}" WHERE _ingest_load_id = ?', [self.load_id]
                ).fetchone()[0]
                self.report["total_rows"] = con.execute(f'SELECT count(*) FROM "{self.table}"').fetchone()[0]
            finally:
                con.close()
        print("report:", self.report)
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    UsersReportFlow()
