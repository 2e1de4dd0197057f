"""Pipeline stages: one module per stage, plain typed functions first, a thin Prefect @task wrapper last."""
