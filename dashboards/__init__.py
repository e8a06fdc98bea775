"""Grafana dashboards for the patient journey pipeline, as code (see dashboards/README.md).

- ``dashboards.generate``: build the dashboards (Grafana Foundation SDK) into ``generated/<uid>.json``;
- ``dashboards.push``: create or update datasource, folder and dashboards through Grafana's HTTP API;
- ``dashboards.report``: the same panels rendered offline into one HTML file;
- ``dashboards.macros``: the ClickHouse plugin's macro and variable expansion.
"""
