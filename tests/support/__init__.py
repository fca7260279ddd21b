"""Helpers the tests share that are not fixtures (those live in the conftest.py files).

    paths           ROOT, the repository the tests run from
    db              ExternalServer (TEST_DATABASE_URL's server), old_sync_copy, snapshot of a database
    env             the sync's environment variables, for fixtures that clear them
    api             API Gateway HTTP API v2 events, LambdaClient (the Mangum handler as Lambda calls it)
    lambda_context  FakeLambdaContext, a Lambda context with a clock, for the handlers
    http            free_port, uvicorn in a thread or a subprocess
    template        template.yaml, the SAM translator run offline on it, and the resources and Rules
                    CloudFormation would evaluate for given parameter values (deployed, failed_rules)

Test modules and conftest.py files import from here, never from a test module.
"""
