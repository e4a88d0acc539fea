from twisted.application.service import ServiceMaker

sandboxd = ServiceMaker("sandboxd", "sandboxd.tap", "Sandboxes as a service", "sandboxd")
