# curbside's AntsRoute webhook: one request per event of AntsRoute's catalogue.
# AntsRoute publishes no request body, so this one is curbside's: copy this file, change it,
# and set `format = "jq"` with `transform_file` to send something else.
# Input: curbside's `standard` body ({"type", "timestamp", "data": the event}).
# A route event (route_started, route_ended, loading_done, unloading_done) is one request with
# the route (its id, date and, on route_ended, the day's summary) instead of a delivery.
. as $e
| $e.data as $d
| def position: if $d.location then {lat: $d.location.lat, lng: $d.location.lng, accuracy_m: $d.location.accuracy_m} else null end;
  def event($name; $more):
    {
      event: $name,
      date: $e.timestamp,
      event_id: $d.id,
      delivery: {
        job_id: $d.job_id, status: $d.status, reason_code: $d.reason_code, reason: $d.reason,
        received_by: $d.received_by, note: $d.note, items: $d.items,
        vehicle_id: $d.vehicle_id, driver_id: $d.driver_id
      },
      position: position
    } + $more;
  if $d.route then
    ( select($d.status == "route_started" or $d.status == "route_ended"
             or $d.status == "loading_done" or $d.status == "unloading_done")
      | {
          event: $d.status,
          date: $e.timestamp,
          event_id: $d.id,
          route: ($d.route + {vehicle_id: $d.vehicle_id, driver_id: $d.driver_id, odometer_m: $d.odometer_m}),
          position: position
        } )
  else
  ( if $d.status == "delivered" or $d.status == "partially_delivered" then event("delivery_done"; {})
    elif $d.status == "failed" then event("delivery_cancelled"; {})
    elif $d.status == "picked_up" then event("loading_done"; {})
    else empty end ),
  ( [$d.attachments[] | select(.kind == "photo") | .url]
    | if length > 0 then event("proof_of_delivery_photo_added"; {photos: .}) else empty end ),
  ( [$d.attachments[] | select(.kind == "signature") | .url]
    | if length > 0 then event("customer_signature_added"; {signature: .[0]}) else empty end )
  end
