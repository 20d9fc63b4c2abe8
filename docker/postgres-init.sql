-- The MLflow store (POSTGRES_DB=mlflow), MLflow's users and permissions, and the queue of benchmark cells and
-- tuning trials (Optuna studies) live in separate databases of one server: each keeps its own alembic
-- version table (the store and the queue both name it alembic_version). Run once, when the data volume is empty.
CREATE DATABASE mlflow_auth;
CREATE DATABASE queue;
