# curbside's AntsRoute webhook: one request per event of AntsRoute's catalogue.
# AntsRoute publishes no request body, so this one is curbside's: copy this file, change it,
# and set `format = "jq"` with `transform_file` to send something else.
# Input: curbside's `standard` body ({"type", "timestamp", "data": the event}).
. as $e
| $e.data as $d
| def event($name; $more):
    {
      event: $name,
      date: $e.timestamp,
      event_id: $d.id,
      delivery: {
        job_id: $d.job_id, status: $d.status, reason_code: $d.reason_code, reason: $d.reason,
        received_by: $d.received_by, note: $d.note, items: $d.items,
        vehicle_id: $d.vehicle_id, driver_id: $d.driver_id
      },
      position: (if $d.location then {lat: $d.location.lat, lng: $d.location.lng, accuracy_m: $d.location.accuracy_m} else null end)
    } + $more;
  ( if $d.status == "delivered" or $d.status == "partially_delivered" then event("delivery_done"; {})
    elif $d.status == "failed" then event("delivery_cancelled"; {})
    elif $d.status == "picked_up" then event("loading_done"; {})
    else empty end ),
  ( [$d.attachments[] | select(.kind == "photo") | .url]
    | if length > 0 then event("proof_of_delivery_photo_added"; {photos: .}) else empty end ),
  ( [$d.attachments[] | select(.kind == "signature") | .url]
    | if length > 0 then event("customer_signature_added"; {signature: .[0]}) else empty end )
