# The stateless sandboxd routers on Nomad, behind any load balancer (or
# Consul's service catalogue).  Parsed in CI (tests/test_deploy.py); never
# submitted to a Nomad cluster from this repository.
job "sandboxd-router" {
  datacenters = ["dc1"]
  type        = "service"

  group "router" {
    count = 2

    network {
      port "api" {
        to = 7700
      }
    }

    task "router" {
      driver = "docker"

      config {
        image      = "sandboxd:latest"
        entrypoint = ["twistd", "--nodaemon", "--pidfile=", "sandboxd-router"]
        args       = ["--config", "/local/router.toml"]
        ports      = ["api"]
      }

      template {
        destination = "local/router.toml"
        data        = <<-TOML
          listen = "tcp:7700"
          etcd = ["http://etcd.service.consul:2379"]
          poll = "1s"
        TOML
      }

      service {
        name = "sandboxd-router"
        port = "api"
        check {
          type     = "http"
          path     = "/health"
          interval = "10s"
          timeout  = "2s"
        }
      }

      resources {
        cpu    = 200
        memory = 256
      }
    }
  }
}
