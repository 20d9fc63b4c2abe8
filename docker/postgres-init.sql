-- The benchmark queue (an Optuna study) and the MLflow store live in separate databases of one server:
-- both keep an alembic_version table.
CREATE DATABASE queue;
