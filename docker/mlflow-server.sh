#!/bin/sh
# The MLflow tracking server of docker/compose.yml, behind MLflow's basic-auth app. Every credential comes
# from the environment; the configuration MLflow reads from a file (MLFLOW_AUTH_CONFIG_PATH) is written here
# at start and holds none, so no secret sits in a committed file or in an image layer.
#   MLFLOW_AUTH_ADMIN_USERNAME (default admin), MLFLOW_AUTH_ADMIN_PASSWORD: the admin MLflow creates on
#       its first start (it reads both itself; changing them later does not change an existing user)
#   MLFLOW_FLASK_SERVER_SECRET_KEY: signs the server's sessions and CSRF tokens
#   MLFLOW_AUTH_DATABASE_URI: users and permissions, e.g. postgresql://harness@postgres/mlflow_auth; put no
#       password in it (PostgreSQL clients read PGPASSWORD)
#   MLFLOW_AUTH_DEFAULT_PERMISSION (default READ): what every user may do in experiments of others
# The arguments go to `mlflow server --app-name basic-auth`.
set -eu
: "${MLFLOW_AUTH_ADMIN_PASSWORD:?set MLFLOW_AUTH_ADMIN_PASSWORD (the MLflow admin password)}"
: "${MLFLOW_FLASK_SERVER_SECRET_KEY:?set MLFLOW_FLASK_SERVER_SECRET_KEY (a long random string)}"
: "${MLFLOW_AUTH_DATABASE_URI:?set MLFLOW_AUTH_DATABASE_URI (where MLflow keeps its users)}"
export MLFLOW_AUTH_ADMIN_USERNAME="${MLFLOW_AUTH_ADMIN_USERNAME:-admin}"

MLFLOW_AUTH_CONFIG_PATH="$(mktemp -d)/basic_auth.ini"
export MLFLOW_AUTH_CONFIG_PATH
cat > "$MLFLOW_AUTH_CONFIG_PATH" <<EOF
[mlflow]
default_permission = ${MLFLOW_AUTH_DEFAULT_PERMISSION:-READ}
database_uri = ${MLFLOW_AUTH_DATABASE_URI}
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
EOF
exec mlflow server --app-name basic-auth "$@"
