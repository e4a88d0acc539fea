# sandboxd on Nomad (the alternative to deploy/kubernetes/): this system job
# runs one sandboxd per client node with the host's dockerd; router.nomad.hcl
# runs the stateless routers.  etcd is external here (cluster.etcd below).
# Parsed in CI (tests/test_deploy.py, python-hcl2); never submitted to a
# Nomad cluster from this repository.
job "sandboxd" {
  datacenters = ["dc1"]
  type        = "system"

  group "node" {
    network {
      mode = "host"
      port "api" {
        static = 7522
      }
    }

    task "sandboxd" {
      driver = "docker"

      config {
        image        = "sandboxd:latest"
        network_mode = "host"
        privileged   = true
        # The node id: 12 hex digits from the Nomad node's unique id, stable
        # across restarts (sandbox ids carry it; routers forward by it).
        entrypoint = ["/bin/sh", "-ec"]
        args = [<<-SH
          id=$(printf %s "$NODE_UNIQUE_ID" | sha256sum | cut -c1-12)
          sed "s/@NODE_ID@/$id/" /local/sandboxd.toml.in > /local/sandboxd.toml
          exec twistd --nodaemon --pidfile= sandboxd --config /local/sandboxd.toml
        SH
        ]
        volumes = [
          "/var/run/docker.sock:/var/run/docker.sock",
          "/var/run/sandboxd:/var/run/sandboxd",
          "/var/lib/sandboxd:/var/lib/sandboxd",
        ]
      }

      env {
        NODE_UNIQUE_ID = "${node.unique.id}"
      }

      template {
        destination = "local/sandboxd.toml.in"
        data        = <<-TOML
          [server]
          socket = "/var/run/sandboxd/sandboxd.sock"
          data_dir = "/var/lib/sandboxd"
          tcp = "{{ env "NOMAD_IP_api" }}:7522"
          node_id = "@NODE_ID@"

          [cluster]
          etcd = ["http://etcd.service.consul:2379"]
          advertise = "http://{{ env "NOMAD_IP_api" }}:7522"
        TOML
      }

      service {
        name = "sandboxd-node"
        port = "api"
        check {
          type     = "http"
          path     = "/health"
          interval = "10s"
          timeout  = "2s"
        }
      }

      kill_timeout = "60s"

      resources {
        cpu    = 500
        memory = 512
      }
    }
  }
}
