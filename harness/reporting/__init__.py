"""Reports of results: tables and their headers (tables), statistics (analysis), the paper's figures
(figures), the page of one run or benchmark (run_report), a tuning study's (study_report) and the
comparison view saved into the MLflow UI (mlflow_view)."""
