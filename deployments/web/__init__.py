"""The upload page: drop files, choose the job, watch the flow runs, download the results.

python -m deployments.web --port 8080 [--data-dir web-data] [--host 0.0.0.0 --token SECRET]

It talks to the Prefect API named by PREFECT_API_URL and starts runs through the deployments of
prefect.yaml; the workers must see `--data-dir` at the same path (same host or a shared mount).
"""
