# The Airflow image for docker-compose.yml: the official Airflow 3.3.2 image plus our pinned
# requirements (the same files `make test` installs), so containers and the local venv agree.
FROM apache/airflow:3.3.2-python3.11

COPY --chown=airflow:root requirements.txt constraints.txt /opt/cognito-streams/
RUN pip install --no-cache-dir -r /opt/cognito-streams/requirements.txt -c /opt/cognito-streams/constraints.txt \
    && pip install --no-cache-dir "moto[server]==5.2.5" -c /opt/cognito-streams/constraints.txt

COPY --chown=airflow:root dags/ /opt/airflow/dags/
COPY --chown=airflow:root plugins/ /opt/airflow/plugins/
COPY --chown=airflow:root sql/ /opt/airflow/sql/
COPY --chown=airflow:root local/ /opt/airflow/local/
ENV PYTHONPATH=/opt/airflow:/opt/airflow/plugins
# The decoder's numba parser compiled at build time into a cache every worker of this image reads
# (a landing task then loads it in well under a second instead of compiling for 20-40 s). The cache
# is for the build machine's CPU; where the image runs on another CPU model, numba compiles once per
# container (set NUMBA_CPU_NAME=generic at build and run time for a cache that fits every x86-64 CPU).
ENV NUMBA_CACHE_DIR=/opt/airflow/numba-cache
RUN python -m cognito_streams.core.warm
