package flightserver

import (
	"github.com/apache/arrow/go/v17/arrow/flight"

	"github.com/stratalog/strata/auth"
)

// Method is the full gRPC name of a method of the Flight service
// ("/arrow.flight.protocol.FlightService/DoGet").
func Method(name string) string { return "/arrow.flight.protocol.FlightService/" + name }

// Rules are the authorization rules of the Flight service, for an
// auth.Guard (merge them with auth.StrataRules): GetFlightInfo and
// GetSchema need describe on the descriptor's topic (what the gRPC API's
// ListOffsets and DescribeTopic need), DoGet needs consume on the
// ticket's topic and counts against the fetch quota (as Fetch does),
// ListFlights an authenticated caller (it lists only the topics
// Config.Visible lets the caller see), and the methods that answer
// UNIMPLEMENTED an authenticated caller. A descriptor or ticket that does
// not decode needs nothing here: the handler refuses it with the same
// decoder (INVALID_ARGUMENT) before it reads anything.
func Rules() auth.Rules {
	topicOf := func(d *flight.FlightDescriptor) []auth.Access {
		c, err := decodeDescriptor(d)
		if err != nil {
			return nil
		}
		return []auth.Access{auth.TopicAccess(auth.Describe, c.Topic)}
	}
	return auth.Rules{
		Method("GetFlightInfo"):  {Needs: auth.On(topicOf)},
		Method("PollFlightInfo"): {Needs: auth.On(topicOf)},
		Method("GetSchema"):      {Needs: auth.On(topicOf)},
		Method("DoGet"): {Quota: auth.FetchQuota, Needs: auth.On(func(t *flight.Ticket) []auth.Access {
			tk, err := decodeTicket(t.GetTicket())
			if err != nil {
				return nil
			}
			return []auth.Access{auth.TopicAccess(auth.Consume, tk.Topic)}
		})},
		Method("ListFlights"): {},
		Method("Handshake"):   {},
		Method("DoPut"):       {},
		Method("DoExchange"):  {},
		Method("DoAction"):    {},
		Method("ListActions"): {},
	}
}
