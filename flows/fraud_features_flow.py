"""Downstream example that waits for SEVERAL tables: Jira issues and carrier safety snapshots must both have landed
(Argo Events sensor with two dependencies) before the fraud feature build runs.

    python flows/fraud_features_flow.py argo-workflows create          # production
    ingest events trigger flows/fraud_features_flow.py                 # locally: needs both events in the ledger
"""
from metaflow import FlowSpec, Parameter, step

from ingest import after_landed


@after_landed(
    "jira.issues", "carrier_safety.snapshots",
    parameters={  # per table: Parameter ← payload field
        "jira.issues": {"issues_load_id": "load_id", "issues_rows": "rows"},
        "carrier_safety.snapshots": {"safety_load_id": "load_id", "safety_rows": "rows"},
    },
)
class FraudFeaturesFlow(FlowSpec):
    issues_load_id = Parameter("issues_load_id", default="")
    issues_rows = Parameter("issues_rows", default=0, type=int)
    safety_load_id = Parameter("safety_load_id", default="")
    safety_rows = Parameter("safety_rows", default=0, type=int)

    @step
    def start(self):
        print(f"building features from issues load {self.issues_load_id} ({self.issues_rows} rows) "
              f"and carrier safety load {self.safety_load_id} ({self.safety_rows} rows)")
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    FraudFeaturesFlow()
